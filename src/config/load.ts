/**
 * Resolves the configuration: schema defaults, then sidecar.toml, then ASKR_<SECTION>_<KEY>
 * environment variables, then CLI flags. Every bad input throws a ConfigError naming where it came
 * from (file and line, env var or flag), the key, the value and what is allowed.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { ConfigError } from '../errors.ts';
import { schema, type Field, type SidecarConfig } from './schema.ts';
import { parseDurationMs, parseSizeBytes } from './units.ts';
import { redactRedisUrl } from '../cluster/redis-url.ts';

export interface LoadOptions {
  /** Path of a TOML file; absent means defaults (plus env and flags). */
  file?: string;
  /** Environment to read ASKR_* overrides from. */
  env?: NodeJS.ProcessEnv;
  /** Overrides keyed "section.key", already as TOML-typed values (strings for durations). */
  overrides?: Record<string, unknown>;
  /** Directory relative paths resolve against when there is no file (default: cwd). */
  baseDir?: string;
}

type Section = keyof typeof schema;

function describe(value: unknown): string {
  // A URL with a password (cluster.redis_url) must never be printed as it is.
  if (typeof value === 'string') {
    return JSON.stringify(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? redactRedisUrl(value) : value);
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function allowed(field: Field): string {
  switch (field.kind) {
    case 'string':
      return 'a string';
    case 'bool':
      return 'true or false';
    case 'int':
      return 'an integer';
    case 'duration':
      return 'a duration string such as "500ms", "30s", "5m", "1h" (or "0")';
    case 'size':
      return 'a size string such as "512", "64KiB", "8MiB", "1GiB"';
    case 'enum':
      return `one of ${field.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'string[]':
      return 'an array of strings';
    case 'map':
      return 'a table of string values, e.g. { key = "value" }';
  }
}

/** Converts one raw value (from TOML, env or flags) to its resolved form, or returns an error text. */
function convert(
  field: Field,
  raw: unknown,
  fromText: boolean,
): { value: unknown } | { error: string } {
  const bad = { error: `expected ${allowed(field)}` };
  switch (field.kind) {
    case 'string':
      return typeof raw === 'string' ? { value: raw } : bad;
    case 'bool':
      if (typeof raw === 'boolean') return { value: raw };
      if (fromText && (raw === 'true' || raw === 'false')) return { value: raw === 'true' };
      return bad;
    case 'int': {
      const n = fromText && typeof raw === 'string' && /^-?\d+$/.test(raw) ? Number(raw) : raw;
      if (typeof n === 'bigint') return { value: Number(n) };
      return typeof n === 'number' && Number.isInteger(n) ? { value: n } : bad;
    }
    case 'duration': {
      if (typeof raw === 'number' && raw === 0) return { value: 0 };
      if (typeof raw !== 'string') return bad;
      const ms = parseDurationMs(raw);
      return ms === null ? bad : { value: ms };
    }
    case 'size': {
      if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0) return { value: raw };
      if (typeof raw !== 'string') return bad;
      const bytes = parseSizeBytes(raw);
      return bytes === null ? bad : { value: bytes };
    }
    case 'enum':
      return typeof raw === 'string' && field.values.includes(raw) ? { value: raw } : bad;
    case 'string[]': {
      if (fromText && typeof raw === 'string') {
        return {
          value: raw
            .split(',')
            .map((s) => s.trim())
            .filter((s) => s !== ''),
        };
      }
      return Array.isArray(raw) && raw.every((v) => typeof v === 'string')
        ? { value: [...raw] }
        : bad;
    }
    case 'map': {
      if (fromText && typeof raw === 'string') {
        // ASKR_FPM_INI="memory_limit=256M,display_errors=0"
        const out: Record<string, string> = {};
        for (const pair of raw.split(',')) {
          if (pair.trim() === '') continue;
          const eq = pair.indexOf('=');
          if (eq <= 0) return bad;
          out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
        }
        return { value: out };
      }
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad;
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v === 'string') out[k] = v;
        else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
        else return bad;
      }
      return { value: out };
    }
  }
}

function apply(
  target: Record<string, Record<string, unknown>>,
  section: string,
  key: string,
  raw: unknown,
  where: string,
  fromText: boolean,
): void {
  const fields = (schema as Record<string, Record<string, Field>>)[section];
  if (fields === undefined) {
    throw new ConfigError(
      `${where}: unknown section [${section}]; allowed sections: ${Object.keys(schema).join(', ')}`,
    );
  }
  const field = fields[key];
  if (field === undefined) {
    throw new ConfigError(
      `${where}: unknown key "${key}" in [${section}]; allowed keys: ${Object.keys(fields).join(', ')}`,
    );
  }
  const result = convert(field, raw, fromText);
  if ('error' in result) {
    throw new ConfigError(`${where}: ${section}.${key} = ${describe(raw)}: ${result.error}`);
  }
  const check = field.check as ((v: unknown) => string | null) | undefined;
  const problem = check?.(result.value);
  if (problem) {
    throw new ConfigError(`${where}: ${section}.${key} = ${describe(raw)}: expected ${problem}`);
  }
  const sectionValues = target[section];
  if (sectionValues) sectionValues[key] = result.value;
}

function defaults(): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [section, fields] of Object.entries(schema as Record<string, Record<string, Field>>)) {
    const values: Record<string, unknown> = {};
    out[section] = values;
    for (const [key, field] of Object.entries(fields)) {
      const result = convert(field, field.default, false);
      if ('error' in result) throw new Error(`schema default of ${section}.${key} is invalid`);
      values[key] = result.value;
    }
  }
  return out;
}

function parseFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read the config file: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    return parse(text);
  } catch (err) {
    if (err instanceof TomlError) {
      throw new ConfigError(
        `${file}:${err.line}:${err.column}: TOML syntax error: ${err.message.split('\n')[0] ?? ''}`,
        { cause: err },
      );
    }
    throw new ConfigError(`${file}: cannot parse TOML: ${(err as Error).message}`, { cause: err });
  }
}

/** Loads and validates the configuration. Throws ConfigError with a precise message. */
export function loadConfig(options: LoadOptions = {}): SidecarConfig {
  const values = defaults();
  const env = options.env ?? process.env;
  let baseDir = options.baseDir ?? process.cwd();

  if (options.file !== undefined) {
    const file = resolve(options.file);
    baseDir = dirname(file);
    const doc = parseFile(file);
    for (const [section, table] of Object.entries(doc)) {
      if (typeof table !== 'object' || table === null || Array.isArray(table)) {
        throw new ConfigError(
          `${file}: top-level key "${section}" must be a [section]; allowed sections: ${Object.keys(schema).join(', ')}`,
        );
      }
      if (!(section in schema)) {
        throw new ConfigError(
          `${file}: unknown section [${section}]; allowed sections: ${Object.keys(schema).join(', ')}`,
        );
      }
      for (const [key, raw] of Object.entries(table)) {
        apply(values, section, key, raw, file, false);
      }
    }
  }

  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('ASKR_') || raw === undefined) continue;
    const rest = name.slice(5).toLowerCase();
    const section = Object.keys(schema).find((s) => rest.startsWith(`${s}_`));
    // ASKR_SOCKET and other ASKR_* variables that name no section belong to the PHP side.
    if (section === undefined) continue;
    apply(values, section, rest.slice(section.length + 1), raw, `environment ${name}`, true);
  }

  for (const [path, raw] of Object.entries(options.overrides ?? {})) {
    const [section = '', key = ''] = path.split('.');
    apply(values, section, key, raw, `flag for ${path}`, true);
  }

  const server = values['server'];
  if (server && typeof server['root'] === 'string' && !isAbsolute(server['root'])) {
    server['root'] = resolve(baseDir, server['root']);
  }
  const config = values as unknown as SidecarConfig;
  config.source = options.file === undefined ? '<defaults>' : resolve(options.file);
  return config;
}

export type { SidecarConfig, Section };
