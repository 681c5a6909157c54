/**
 * Command-line flags backed by BENCH_* environment variables, for the benchmarks' settings: a
 * table maps each flag (`--name VALUE`) to its variable; a flag given wins over the variable, the
 * variable over the default. A bad value throws naming the flag or variable, its value and what is
 * allowed. `-h` / `--help` makes `readFlags` return null (the caller prints its usage).
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

/** A value and where it came from: `--flag` (given or the default) or the variable's name. */
export interface FlagValue {
  text: string;
  where: string;
}

/** Readers of the flags of one table, each with its default. */
export interface FlagReader<F extends string> {
  /** The flag's text, else its variable's (trimmed, when not blank), else `fallback`. */
  get: (flag: F, fallback: string) => FlagValue;
  /** A number >= `min`; a bad one throws with `usage` appended. */
  num: (flag: F, fallback: number, min: number) => number;
  /** An integer >= `min`; a bad one throws with `usage` appended. */
  int: (flag: F, fallback: number, min: number) => number;
  /**
   * A comma-separated list, each one of `all` (default: all of them), without repeats, in the
   * order given: "baseline,slow-readers" runs the baseline first.
   */
  pick: <T extends string>(flag: F, all: readonly T[], fallback?: string) => T[];
}

/** The first lines of a `usage` text: how to run `bench/<name>.ts`, then the columns' meaning. */
export function usageHead(name: string): string {
  return `node bench/${name}.ts [flags]  (npm run bench:${name} -- [flags])
flag / BENCH_* variable (default):`;
}

/** A variable outside the flag table: its trimmed value, or `fallback` when unset or blank. */
export function env(name: string, fallback: string): string {
  const v = process.env[name];
  return v === undefined || v.trim() === '' ? fallback : v.trim();
}

/**
 * Parses `argv` (without node and the script) against `flags` (flag name -> BENCH_* variable);
 * null when --help was asked. Unknown flags throw (parseArgs strict mode).
 */
export function readFlags<F extends string>(
  argv: string[],
  flags: Readonly<Record<F, string>>,
  usage: string,
): FlagReader<F> | null {
  const options: ParseArgsOptionsConfig = { help: { type: 'boolean', short: 'h' } };
  for (const f of Object.keys(flags)) options[f] = { type: 'string' };
  const { values } = parseArgs({ args: argv, options, strict: true });
  if (values['help'] === true) return null;
  const get = (flag: F, fallback: string): FlagValue => {
    const fromFlag = values[flag];
    if (typeof fromFlag === 'string') return { text: fromFlag, where: `--${flag}` };
    const fromEnv = process.env[flags[flag]];
    if (fromEnv !== undefined && fromEnv.trim() !== '') {
      return { text: fromEnv.trim(), where: flags[flag] };
    }
    return { text: fallback, where: `--${flag}` };
  };
  const number = (flag: F, fallback: number, min: number, integer: boolean): number => {
    const { text, where } = get(flag, String(fallback));
    const n = Number(text);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
      throw new Error(
        `${where}=${text}: expected ${integer ? 'an integer' : 'a number'} >= ${min}\n\n${usage}`,
      );
    }
    return n;
  };
  return {
    get,
    num: (flag, fallback, min) => number(flag, fallback, min, false),
    int: (flag, fallback, min) => number(flag, fallback, min, true),
    pick: <T extends string>(flag: F, all: readonly T[], fallback = all.join(',')): T[] => {
      const { text, where } = get(flag, fallback);
      const picked = text.split(',').map((s) => s.trim());
      for (const p of picked) {
        if (!(all as readonly string[]).includes(p)) {
          throw new Error(`${where}: "${p}" is not one of ${all.join(', ')}`);
        }
      }
      return picked.filter((p, i): p is T => picked.indexOf(p) === i);
    },
  };
}

/**
 * readFlags for a bench with a `--quick` switch (it takes no value; BENCH_QUICK=1 too): the
 * reader and whether quick was asked; null when --help was asked.
 */
export function readFlagsWithQuick<F extends string>(
  argv: string[],
  flags: Readonly<Record<F, string>>,
  usage: string,
): { quick: boolean; flags: FlagReader<F> } | null {
  const quick = argv.includes('--quick') || env('BENCH_QUICK', '0') === '1';
  const reader = readFlags(
    argv.filter((a) => a !== '--quick'),
    flags,
    usage,
  );
  return reader === null ? null : { quick, flags: reader };
}
