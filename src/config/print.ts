/**
 * `check-config --print`: the effective configuration as TOML, every key followed by a comment
 * naming its source (default, the file and line, an ASKR_* variable, a CLI flag) and what it
 * overrode. Secrets are masked (src/config/mask.ts): the output can be pasted into an issue.
 * Pure: a loaded config in, text out.
 */
import { isAbsolute } from 'node:path';
import type { LoadedConfig } from './load.ts';
import { maskValue } from './mask.ts';
import { originLabel, type Origin } from './provenance.ts';
import { schema, type Field } from './schema.ts';

/** Where the config file came from, for the header. */
export interface PrintContext {
  /** How the file was chosen: "--config", "./sidecar.toml in the working directory", or none. */
  fileChosenBy: string | null;
}

/** A comment column wide enough for most lines; longer lines take one space. */
const COMMENT_COLUMN = 44;

/** A TOML literal for a resolved (and masked) value; durations and sizes as they were written. */
function tomlLiteral(field: Field, value: unknown, raw: unknown): string {
  if ((field.kind === 'duration' || field.kind === 'size') && typeof raw === 'string') {
    return JSON.stringify(raw);
  }
  return toToml(value);
}

function toToml(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(toToml).join(', ')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value);
    if (entries.length === 0) return '{}';
    return `{ ${entries.map(([k, v]) => `${JSON.stringify(k)} = ${toToml(v)}`).join(', ')} }`;
  }
  return JSON.stringify(value) ?? String(value);
}

function sourceLabel(origin: Origin): string {
  return origin.kind === 'file' ? `file ${originLabel(origin)}` : originLabel(origin);
}

/** The comment after one key: its source, what it overrode, and notes. */
function comment(
  path: string,
  field: Field,
  stack: readonly Origin[],
  loaded: LoadedConfig,
  note: string | null,
): string {
  const origin = stack[stack.length - 1] ?? { kind: 'default' };
  const notes: string[] = [];
  const overridden = stack.slice(1, -1).filter((o) => o.kind !== 'default');
  if (overridden.length > 0) {
    notes.push(`overrides ${overridden.map(sourceLabel).reverse().join(', ')}`);
  }
  const raw = loaded.raw.get(path);
  if (origin.kind !== 'default' && JSON.stringify(raw) === JSON.stringify(field.default)) {
    notes.push('same as the default');
  }
  if (path === 'server.root' && typeof raw === 'string' && !isAbsolute(raw)) {
    notes.push(`${JSON.stringify(raw)} resolved against ${loaded.baseDir}`);
  }
  if (note !== null) notes.push(note);
  return notes.length === 0 ? sourceLabel(origin) : `${sourceLabel(origin)} (${notes.join('; ')})`;
}

/** The effective configuration as commented TOML; secrets masked. */
export function renderEffectiveConfig(loaded: LoadedConfig, context: PrintContext): string {
  const { config } = loaded;
  const out = [
    '# askr-sidecar effective configuration (askr-sidecar check-config --print)',
    config.source === '<defaults>'
      ? '# config file: none (built-in defaults; --config FILE to use one)'
      : `# config file: ${config.source}${context.fileChosenBy === null ? '' : ` (${context.fileChosenBy})`}`,
    '# Precedence: flags > environment (ASKR_<SECTION>_<KEY>) > config file > defaults.',
    '# After each value: where it came from. Secrets are shown as "****".',
    '',
  ];
  const values = config as unknown as Record<string, Record<string, unknown>>;
  for (const [section, fields] of Object.entries(schema as Record<string, Record<string, Field>>)) {
    out.push(`[${section}]`);
    for (const [key, field] of Object.entries(fields)) {
      const path = `${section}.${key}`;
      const stack = loaded.provenance.get(path) ?? [];
      const masked = maskValue(field, values[section]?.[key]);
      const raw = masked.note === null ? loaded.raw.get(path) : undefined;
      const line = `${key} = ${tomlLiteral(field, masked.value, raw)}`;
      const pad = ' '.repeat(Math.max(1, COMMENT_COLUMN - line.length));
      out.push(`${line}${pad}# ${comment(path, field, stack, loaded, masked.note)}`);
    }
    out.push('');
  }
  if (loaded.unusedEnv.length > 0) {
    out.push(
      `# ASKR_* variables that are no config key (the PHP side reads ASKR_SOCKET and the like): ${[...loaded.unusedEnv].sort().join(', ')}`,
      '',
    );
  }
  return out.join('\n');
}
