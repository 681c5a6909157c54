/**
 * Parsing of human-written durations ("30s", "1m30s", "250ms") and sizes ("8MiB", "64KiB", "512").
 * Both return null on malformed input so the caller can report the key and value precisely.
 */

const DURATION_UNITS_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Parses "1h30m", "15s", "250ms", "0" into milliseconds. Returns null when malformed. */
export function parseDurationMs(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  let match: RegExpExecArray | null;
  while ((match = re.exec(trimmed)) !== null) {
    const amount = Number(match[1]);
    const unit = DURATION_UNITS_MS[match[2] ?? ''];
    if (unit === undefined) return null;
    total += amount * unit;
    consumed = re.lastIndex;
  }
  if (consumed === 0 || consumed !== trimmed.length) return null;
  return Math.round(total);
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  kib: 1024,
  m: 1000 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1000 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/** Parses "8MiB", "64KiB", "1.5MB", "512" into bytes. Returns null when malformed. */
export function parseSizeBytes(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!match) return null;
  const unit = SIZE_UNITS[(match[2] ?? '').toLowerCase()];
  if (unit === undefined) return null;
  return Math.floor(Number(match[1]) * unit);
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}GiB`;
  if (bytes >= 1024 ** 2 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024}KiB`;
  return `${bytes}B`;
}
