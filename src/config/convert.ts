/**
 * One raw config value (TOML-typed from the file or a default, text from an env variable or a
 * flag) to its resolved form: durations to ms, sizes to bytes, lists and tables from their text
 * forms. Pure; a value that does not fit returns what was expected, never throws.
 */
import type { Field } from './schema.ts';
import { parseDurationMs, parseSizeBytes } from './units.ts';

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

/**
 * Converts one raw value (from TOML, env or flags) to its resolved form, or returns what was
 * expected. `fromText`: the value is text from an env variable or a flag ("true", "1,2", "a=b").
 */
export function convert(
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
