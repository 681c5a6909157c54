/**
 * Resolves the configuration: schema defaults, then sidecar.toml, then ASKR_<SECTION>_<KEY>
 * environment variables, then CLI flags, recording where each value came from. Every bad input
 * throws a ConfigError naming where it came from (file and line, env var or flag), the key, the
 * value (secrets masked) and what is allowed, with "did you mean" for a misspelt name.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { ConfigError } from '../errors.ts';
import { describeValue } from './mask.ts';
import { originLabel, type Origin, type Provenance } from './provenance.ts';
import { schema, type Field, type SidecarConfig } from './schema.ts';
import {
  didYouMeanKey,
  sectionsWithKey,
  suggestKey,
  suggestSection,
  type KeySuggestion,
} from './suggest.ts';
import { explainTomlError, locateKeys, type KeyLines } from './toml-source.ts';
import { convert } from './convert.ts';

export interface LoadOptions {
  /** Path of a TOML file; absent means defaults (plus env and flags). */
  file?: string;
  /** Environment to read ASKR_* overrides from. */
  env?: NodeJS.ProcessEnv;
  /** Overrides keyed "section.key", already as TOML-typed values (strings for durations). */
  overrides?: Record<string, unknown>;
  /** The CLI flag of each override ("server.listen" → "--listen"), for messages and provenance. */
  flags?: Record<string, string>;
  /** Directory relative paths resolve against when there is no file (default: cwd). */
  baseDir?: string;
}

/** A loaded configuration with the source of every value. */
export interface LoadedConfig {
  config: SidecarConfig;
  /** "section.key" → the sources that set it, weakest (the default) first. */
  provenance: Provenance;
  /** "section.key" → the value as its effective source wrote it ("30s", "8MiB", "a,b"). */
  raw: ReadonlyMap<string, unknown>;
  /** ASKR_* variables that name no section: the PHP side's (ASKR_SOCKET), or misspelt ones. */
  unusedEnv: string[];
  /** The directory a relative server.root was resolved against. */
  baseDir: string;
}

type Section = keyof typeof schema;
const fieldsOf = (section: string): Record<string, Field> | undefined =>
  (schema as Record<string, Record<string, Field>>)[section];

const envName = (s: KeySuggestion): string =>
  `ASKR_${s.section.toUpperCase()}_${s.key.toUpperCase()}`;

/** The resolved values, and per key the sources that set them and the raw value that won. */
interface State {
  values: Record<string, Record<string, unknown>>;
  provenance: Map<string, Origin[]>;
  raw: Map<string, unknown>;
}

/** "did you mean" in the vocabulary of the source: a TOML key, or an ASKR_* variable. */
function unknownKeyMessage(where: string, origin: Origin, section: string, key: string): string {
  const fields = fieldsOf(section) ?? {};
  const suggestions = suggestKey(section, key);
  const hint =
    suggestions.length === 0
      ? ''
      : origin.kind === 'env'
        ? `did you mean ${suggestions.map(envName).join(' or ')}?`
        : didYouMeanKey(section, suggestions);
  return `${where}: unknown key "${key}" in [${section}]${withHint(hint, 'allowed keys')}: ${Object.keys(fields).join(', ')}`;
}

/** "; allowed keys" without a hint, "; did you mean …? Allowed keys" with one. */
const withHint = (hint: string, allowedWhat: string): string =>
  hint === ''
    ? `; ${allowedWhat}`
    : `; ${hint} ${allowedWhat[0]?.toUpperCase() ?? ''}${allowedWhat.slice(1)}`;

function unknownSectionMessage(where: string, section: string): string {
  const near = suggestSection(section);
  const hint = near.length === 0 ? '' : `did you mean ${near.map((s) => `[${s}]`).join(' or ')}?`;
  return `${where}: unknown section [${section}]${withHint(hint, 'allowed sections')}: ${Object.keys(schema).join(', ')}`;
}

function apply(
  state: State,
  section: string,
  key: string,
  raw: unknown,
  origin: Origin,
  fromText: boolean,
): void {
  const where = originLabel(origin);
  const fields = fieldsOf(section);
  if (fields === undefined) throw new ConfigError(unknownSectionMessage(where, section));
  const field = fields[key];
  if (field === undefined) throw new ConfigError(unknownKeyMessage(where, origin, section, key));
  const result = convert(field, raw, fromText);
  if ('error' in result) {
    throw new ConfigError(
      `${where}: ${section}.${key} = ${describeValue(field, raw)}: ${result.error}`,
    );
  }
  const check = field.check as ((v: unknown) => string | null) | undefined;
  const problem = check?.(result.value);
  if (problem) {
    throw new ConfigError(
      `${where}: ${section}.${key} = ${describeValue(field, raw)}: expected ${problem}`,
    );
  }
  const sectionValues = state.values[section];
  if (sectionValues) sectionValues[key] = result.value;
  const path = `${section}.${key}`;
  state.provenance.get(path)?.push(origin);
  state.raw.set(path, raw);
}

function defaults(): State {
  const state: State = { values: {}, provenance: new Map(), raw: new Map() };
  for (const [section, fields] of Object.entries(schema as Record<string, Record<string, Field>>)) {
    const values: Record<string, unknown> = {};
    state.values[section] = values;
    for (const [key, field] of Object.entries(fields)) {
      const result = convert(field, field.default, false);
      if ('error' in result) throw new Error(`schema default of ${section}.${key} is invalid`);
      values[key] = result.value;
      state.provenance.set(`${section}.${key}`, [{ kind: 'default' }]);
      state.raw.set(`${section}.${key}`, field.default);
    }
  }
  return state;
}

function parseFile(file: string): { doc: Record<string, unknown>; lines: KeyLines } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read the config file: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    return { doc: parse(text), lines: locateKeys(text) };
  } catch (err) {
    if (err instanceof TomlError) {
      const parserText = err.message.split('\n')[0]?.replace(/^Invalid TOML document: /, '') ?? '';
      const plain = explainTomlError(text, err.line, err.column, parserText);
      throw new ConfigError(
        `${file}:${plain?.line ?? err.line}:${plain?.column ?? err.column}: TOML syntax error: ${plain?.text ?? parserText}`,
        { cause: err },
      );
    }
    throw new ConfigError(`${file}: cannot parse TOML: ${(err as Error).message}`, { cause: err });
  }
}

function applyFile(state: State, file: string): void {
  const { doc, lines } = parseFile(file);
  const at = (line: number | undefined): Origin =>
    line === undefined ? { kind: 'file', file } : { kind: 'file', file, line };
  for (const [section, table] of Object.entries(doc)) {
    if (typeof table !== 'object' || table === null || Array.isArray(table)) {
      const owners = sectionsWithKey(section);
      const hint =
        owners.length === 0 ? '' : `; it belongs under ${owners.map((s) => `[${s}]`).join(' or ')}`;
      throw new ConfigError(
        `${originLabel(at(lines.keys.get(`.${section}`)))}: top-level key "${section}" must be a [section]${hint}; allowed sections: ${Object.keys(schema).join(', ')}`,
      );
    }
    if (!(section in schema)) {
      throw new ConfigError(
        unknownSectionMessage(originLabel(at(lines.sections.get(section))), section),
      );
    }
    for (const [key, raw] of Object.entries(table)) {
      apply(state, section, key, raw, at(lines.keys.get(`${section}.${key}`)), false);
    }
  }
}

/**
 * Loads and validates the configuration, recording the source of every value. Throws
 * ConfigError with a precise message.
 */
export function loadConfigWithProvenance(options: LoadOptions = {}): LoadedConfig {
  const state = defaults();
  const env = options.env ?? process.env;
  let baseDir = options.baseDir ?? process.cwd();
  const unusedEnv: string[] = [];

  if (options.file !== undefined) {
    const file = resolve(options.file);
    baseDir = dirname(file);
    applyFile(state, file);
  }

  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('ASKR_') || raw === undefined) continue;
    const rest = name.slice(5).toLowerCase();
    const section = Object.keys(schema).find((s) => rest.startsWith(`${s}_`));
    // ASKR_SOCKET and other ASKR_* variables that name no section belong to the PHP side.
    if (section === undefined) {
      unusedEnv.push(name);
      continue;
    }
    apply(state, section, rest.slice(section.length + 1), raw, { kind: 'env', name }, true);
  }

  for (const [path, raw] of Object.entries(options.overrides ?? {})) {
    const [section = '', key = ''] = path.split('.');
    const flag = options.flags?.[path] ?? `for ${path}`;
    apply(state, section, key, raw, { kind: 'flag', flag }, true);
  }

  const server = state.values['server'];
  if (server && typeof server['root'] === 'string' && !isAbsolute(server['root'])) {
    server['root'] = resolve(baseDir, server['root']);
  }
  const config = state.values as unknown as SidecarConfig;
  config.source = options.file === undefined ? '<defaults>' : resolve(options.file);
  return { config, provenance: state.provenance, raw: state.raw, unusedEnv, baseDir };
}

/** Loads and validates the configuration. Throws ConfigError with a precise message. */
export function loadConfig(options: LoadOptions = {}): SidecarConfig {
  return loadConfigWithProvenance(options).config;
}

export type { SidecarConfig, Section };
