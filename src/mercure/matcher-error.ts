/** A pattern refused (too long, bad text, not valid for its type); the message is user-facing.
 * Its own file so that matchers.ts and uri-template.ts both import it without a cycle. */
import { ErrorCodes, SidecarError, type SidecarErrorOptions } from '../errors.ts';

export class MatcherError extends SidecarError {
  constructor(message: string, options: SidecarErrorOptions = {}) {
    super(ErrorCodes.BAD_REQUEST, message, options);
    this.name = 'MatcherError';
  }
}
