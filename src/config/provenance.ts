/**
 * Where a configuration value came from: the schema default, the TOML file (path and line), an
 * ASKR_* environment variable or a CLI flag. The loader records one stack per key (weakest
 * first), so `check-config --print` and error messages can say which source won and what it
 * overrode. Pure data and formatting.
 */

/** One source of a value. */
export type Origin =
  | { readonly kind: 'default' }
  | { readonly kind: 'file'; readonly file: string; readonly line?: number }
  | { readonly kind: 'env'; readonly name: string }
  | { readonly kind: 'flag'; readonly flag: string };

/** "section.key" → the sources that set it, weakest first; the last one is the effective value. */
export type Provenance = ReadonlyMap<string, readonly Origin[]>;

/**
 * The prefix of a message about a value from `origin`, in the form the loader has always used:
 * "/path/sidecar.toml:12", "environment ASKR_SERVER_LISTEN", "flag --listen", "default".
 */
export function originLabel(origin: Origin): string {
  switch (origin.kind) {
    case 'default':
      return 'default';
    case 'file':
      return origin.line === undefined ? origin.file : `${origin.file}:${origin.line}`;
    case 'env':
      return `environment ${origin.name}`;
    case 'flag':
      return `flag ${origin.flag}`;
  }
}

/** The effective source of `path` ("section.key"); the default when nothing else set it. */
export function effectiveOrigin(provenance: Provenance, path: string): Origin {
  const stack = provenance.get(path);
  return stack?.[stack.length - 1] ?? { kind: 'default' };
}
