/**
 * Renders the schema as a commented sidecar.toml (every key at its default) and as the Markdown
 * reference in docs/configuration.md. Both files are generated (`npm run gen:config`) and a unit
 * test fails when they drift from the schema.
 */
import { schema, type Field } from './schema.ts';

function tomlValue(field: Field): string {
  const d = field.default;
  if (typeof d === 'string') return JSON.stringify(d);
  if (typeof d === 'boolean' || typeof d === 'number') return String(d);
  if (Array.isArray(d)) return `[${d.map((v) => JSON.stringify(v)).join(', ')}]`;
  const entries = Object.entries(d as Record<string, string>);
  return `{${entries.map(([k, v]) => ` ${JSON.stringify(k)} = ${JSON.stringify(v)}`).join(',')}${entries.length ? ' ' : ''}}`;
}

function typeName(field: Field): string {
  if (field.kind === 'enum') return field.values.join(' \\| ');
  return field.kind;
}

const fields = (): Array<[string, Array<[string, Field]>]> =>
  Object.entries(schema).map(([section, f]) => [
    section,
    Object.entries(f as Record<string, Field>),
  ]);

export function renderToml(): string {
  const out = [
    '# askr-sidecar configuration. Every key is shown at its default; delete what you do not change.',
    '# Generated from src/config/schema.ts by `npm run gen:config`; docs/configuration.md has the same',
    '# reference. Env overrides: ASKR_<SECTION>_<KEY> (e.g. ASKR_SERVER_LISTEN); CLI flags win over both.',
    '# Durations are strings ("500ms", "30s", "5m"), sizes too ("64KiB", "8MiB").',
    '',
  ];
  for (const [section, list] of fields()) {
    out.push(`[${section}]`);
    for (const [key, field] of list) {
      out.push(`# ${field.doc}${field.restart === true ? ' (restart to change)' : ''}`);
      out.push(`${key} = ${tomlValue(field)}`);
    }
    out.push('');
  }
  return out.join('\n');
}

export function renderMarkdown(): string {
  const out = [
    '# Configuration reference',
    '',
    'Generated from `src/config/schema.ts` (`npm run gen:config`); a test fails when this file drifts.',
    '',
    'Sources, strongest first: CLI flags (`--listen`, `--root`, `--fpm`, `--log-level`), environment',
    'variables `ASKR_<SECTION>_<KEY>` (e.g. `ASKR_FASTCGI_POOL_SIZE=32`; lists are comma-separated,',
    'tables are `key=value,key=value`), the TOML file (`--config FILE`, default `./sidecar.toml` when',
    'present), then the defaults below. Durations are strings such as `"500ms"`, `"30s"`, `"5m"`,',
    '`"1h"` (or `"0"`); sizes are strings such as `"512"`, `"64KiB"`, `"8MiB"`. Unknown keys, wrong',
    'types and bad values stop the start with the file and line, the key, the value (secrets masked)',
    'and what is allowed ("did you mean" for a misspelt key); `askr-sidecar check-config` runs the same',
    'validation without starting, and `check-config --print` shows the value of every key and where',
    'it came from.',
    'Keys marked "restart" are not changed by a SIGHUP reload.',
    '',
  ];
  for (const [section, list] of fields()) {
    out.push(
      `## [${section}]`,
      '',
      '| key | type | default | env | description |',
      '|---|---|---|---|---|',
    );
    for (const [key, field] of list) {
      const env = `ASKR_${section.toUpperCase()}_${key.toUpperCase()}`;
      const doc = field.doc.replace(/\|/g, '\\|') + (field.restart === true ? ' *(restart)*' : '');
      out.push(
        `| \`${key}\` | ${typeName(field)} | \`${tomlValue(field).replace(/\|/g, '\\|')}\` | \`${env}\` | ${doc} |`,
      );
    }
    out.push('');
  }
  return out.join('\n');
}
