/**
 * What a reload changes, key by key: which reloadable keys take a new value (applied), which keys
 * differ but need a restart, and the config that runs afterwards. A key that needs a restart keeps
 * its running value, derived values included (the real document root, the datagram socket's
 * fallback path), so PHP keeps the ASKR_SOCKET it was given at start. Pure.
 */
import { schema, type SidecarConfig } from '../config/schema.ts';

type Sections = Record<string, Record<string, unknown>>;

/** Every "section.key" of the schema with whether a reload can apply it. */
const KEYS: ReadonlyArray<{ section: string; key: string; path: string; restart: boolean }> =
  Object.entries(schema).flatMap(([section, fields]) =>
    Object.entries(fields as Record<string, { restart?: boolean }>).map(([key, field]) => {
      const path = `${section}.${key}`;
      return {
        section,
        key,
        path,
        restart: field.restart === true,
      };
    }),
  );

export interface ConfigChanges {
  /** The next config with every restart key at its running value: what runs after the reload. */
  effective: SidecarConfig;
  /** Reloadable keys whose value changes ("section.key", schema order). */
  applied: string[];
  /** Keys whose configured value differs from the running one but that need a restart. */
  needRestart: string[];
}

/**
 * Compares a freshly loaded config with the running one.
 * @param configuredAtStart the config as loaded at start, before start-up derived values from
 *   it: a restart key is reported when the file now says something else than it said then.
 * @param running the config in effect (derived values included).
 * @param next the config as loaded now.
 */
export function configChanges(
  configuredAtStart: SidecarConfig,
  running: SidecarConfig,
  next: SidecarConfig,
): ConfigChanges {
  const was = configuredAtStart as unknown as Sections;
  const now = running as unknown as Sections;
  const loaded = next as unknown as Sections;
  const effective: Sections = {};
  for (const section of Object.keys(schema)) effective[section] = { ...loaded[section] };
  const applied: string[] = [];
  const needRestart: string[] = [];
  for (const { section, key, path, restart } of KEYS) {
    const target = effective[section] ?? {};
    if (restart) {
      if (!same(was[section]?.[key], loaded[section]?.[key])) needRestart.push(path);
      target[key] = now[section]?.[key];
    } else if (!same(now[section]?.[key], loaded[section]?.[key])) {
      applied.push(path);
    }
  }
  return {
    effective: { ...(effective as unknown as SidecarConfig), source: next.source },
    applied,
    needRestart,
  };
}

/** Config values are plain data (strings, numbers, booleans, arrays, string maps). */
function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
