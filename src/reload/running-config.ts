/**
 * The configuration in effect and its reload (SIGHUP). A reload is all or nothing:
 *
 *   read ─▶ carry restart keys over ─▶ optionsFrom(next): validate all ─▶ apply every part ─▶ log
 *             (config-changes.ts)          throws? log, keep everything     (never throws)
 *
 * Components register the part they apply with onApply() when they are built; they read the
 * rest through getters of `current`. Reloads run one at a time, in the order they were asked.
 * Invariant: a reload that fails changes nothing, and says why in one log line.
 */
import type { Logger } from 'pino';
import type { SidecarConfig } from '../config/schema.ts';
import { isSidecarError, toError } from '../errors.ts';
import { configChanges } from './config-changes.ts';
import { configWarnings, keepStartOnlyParts, type ComponentOptions } from './component-options.ts';

/** What a reload did: the keys applied and those that need a restart, or why nothing was. */
export type ReloadOutcome =
  { ok: true; applied: string[]; needRestart: string[] } | { ok: false; error: Error };

/** Applies a component's part of the next options; `previous` is what it runs with now. */
export type ApplyFn = (next: ComponentOptions, previous: ComponentOptions) => void;

export interface RunningConfigOptions {
  /** The options start-up built the components with. */
  initial: ComponentOptions;
  /** The config as loaded at start, before start-up derived values from it (a copy). */
  configuredAtStart: SidecarConfig;
  /** Derives and validates (optionsFrom); throws ConfigError naming the bad key. */
  prepare(config: SidecarConfig): Promise<ComponentOptions>;
  logger: Logger;
}

export class RunningConfig {
  #current: ComponentOptions;
  readonly #options: RunningConfigOptions;
  readonly #appliers: Array<{ name: string; apply: ApplyFn }> = [];
  /** The last reload asked for: the next one starts after it settles. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(options: RunningConfigOptions) {
    this.#options = options;
    this.#current = options.initial;
  }

  /** The options in effect: components read their live settings through this. */
  get current(): ComponentOptions {
    return this.#current;
  }

  /**
   * Registers the part of a reload a component applies (called once, when it is built). `apply`
   * must not throw: everything it takes was validated by `prepare` before any part is applied.
   */
  onApply(name: string, apply: ApplyFn): void {
    this.#appliers.push({ name, apply });
  }

  /**
   * Validates `next` whole, then applies every part, and logs the outcome: the keys applied and
   * those that need a restart, or the error and that the running config stays. `next` may be a
   * function reading the config (the SIGHUP handler's file read): its error is reported the same
   * way. Never rejects.
   */
  reload(next: SidecarConfig | (() => SidecarConfig)): Promise<ReloadOutcome> {
    const run = this.#queue.then(() => this.#reloadNow(next));
    this.#queue = run;
    return run;
  }

  /** Shutting down: later reloads fail, and one still validating applies nothing. */
  close(): void {
    this.#closed = true;
  }

  async #reloadNow(read: SidecarConfig | (() => SidecarConfig)): Promise<ReloadOutcome> {
    const { logger } = this.#options;
    let source: string | undefined;
    try {
      const loaded = typeof read === 'function' ? read() : read;
      source = loaded.source;
      if (this.#closed) throw new Error('the sidecar is shutting down');
      const previous = this.#current;
      const changes = configChanges(this.#options.configuredAtStart, previous.config, loaded);
      const prepared = await this.#options.prepare(changes.effective);
      if (this.#closed) throw new Error('the sidecar is shutting down');
      const kept = keepStartOnlyParts(prepared, previous);
      const applied = changes.applied.filter((key) => !kept.needRestart.includes(key));
      const needRestart = [...changes.needRestart, ...kept.needRestart];
      // Logged before the new log.level applies, so a quieter level still records its own change.
      logger.info(
        { source, applied, needRestart },
        needRestart.length === 0 ? 'config reloaded' : 'config reloaded; some keys need a restart',
      );
      this.#apply(kept.options, previous);
      for (const w of configWarnings(kept.options)) logger.warn({ key: w.key }, w.message);
      return { ok: true, applied, needRestart };
    } catch (err) {
      const error = toError(err);
      logger.error(
        {
          source,
          code: isSidecarError(err) ? err.code : undefined,
          err: error.message,
        },
        'config reload failed; keeping the running config',
      );
      return { ok: false, error };
    }
  }

  #apply(next: ComponentOptions, previous: ComponentOptions): void {
    this.#current = next;
    for (const { name, apply } of this.#appliers) {
      try {
        apply(next, previous);
      } catch (err) {
        // Not expected: prepare validated every value. Logged so the half-applied part is known.
        this.#options.logger.error(
          { component: name, err: toError(err).message },
          'config reload: a component refused options that passed validation',
        );
      }
    }
  }
}
