/**
 * A one-shot abort flag for FastCGI requests: what the pool needs of an AbortSignal (an
 * AbortSignal is one), and AbortFlag, a lighter one for the per-request hot path (no EventTarget,
 * no AbortController). Invariant: a listener is called at most once, and never after removal.
 */

/**
 * What the pool needs of an AbortSignal: an AbortSignal is one, and so is the lighter AbortFlag
 * (no EventTarget per request on the hot path).
 */
export interface FcgiAbortSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: AbortListener, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: AbortListener): void;
}

/** An abort listener as an object (EventTarget's EventListenerObject form). */
export interface AbortListener {
  handleEvent(): void;
}

/** A one-shot abort flag for FcgiRequestInit.signal, cheaper than an AbortController. */
export class AbortFlag implements FcgiAbortSignal {
  #aborted = false;
  #listeners: AbortListener[] | null = null;

  get aborted(): boolean {
    return this.#aborted;
  }

  addEventListener(_type: 'abort', listener: AbortListener): void {
    if (this.#aborted) return;
    (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: AbortListener): void {
    const listeners = this.#listeners;
    if (listeners === null) return;
    const index = listeners.indexOf(listener);
    if (index >= 0) listeners.splice(index, 1);
  }

  /** Sets the flag and calls every listener once. Idempotent. */
  abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    const listeners = this.#listeners;
    this.#listeners = null;
    if (listeners !== null) for (const listener of listeners) listener.handleEvent();
  }
}
