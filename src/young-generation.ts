/**
 * The cap on V8's young generation (server.semi_space_size, node's --max-semi-space-size). V8
 * grows its two semi-spaces while a burst of connections keeps many new objects alive and never
 * gives them back, even idle (issue 13: 2,000 SSE streams opened and closed, 40 times, took the
 * new space from 32 to 128 MiB, committed and resident for good). V8 reads the flag only as it
 * starts, so the CLI runs node again with it: process.execve keeps the pid, stdio and environment.
 * Invariants: a --max-semi-space-size given to node (its arguments or NODE_OPTIONS) always wins;
 * the cap only ever lowers V8's own maximum, never raises it (small hosts and containers).
 */
import { getHeapStatistics } from 'node:v8';

const MIB = 1024 * 1024;
/** `--max-semi-space-size=N` or `--max_semi_space_size N` (V8 takes both spellings); last wins. */
const SEMI_FLAG_RE = /(?:^|\s)--max[-_]semi[-_]space[-_]size(?:=|\s+)(\d+)(?=\s|$)/g;
const OLD_FLAG_RE = /(?:^|\s)--max[-_]old[-_]space[-_]size(?:=|\s+)(\d+)(?=\s|$)/g;
/**
 * V8 13 (Node 24) sizes its heap from the memory node sees (the host's, or the container's
 * limit): old generation = 64 semi-spaces, young generation = 3 semi-spaces (two, plus as much
 * for new large objects), so heap_size_limit = 67 semi-spaces (measured: 4,288 MiB and 64 MiB
 * semi-spaces on a 24 GiB host). Under 256 MiB of old generation V8 takes smaller semi-spaces
 * still, so the estimate is high there, which matters only to caps under 4 MiB. With
 * --max-old-space-size the young generation keeps its memory-based size, and heap_size_limit -
 * old generation = 3 semi-spaces (measured: 704 MiB with --max-old-space-size=512).
 */
const LIMIT_SEMI_SPACES = 67;
const YOUNG_SEMI_SPACES = 3;

/** Where a --max-semi-space-size given to node came from. */
export type FlagSource = 'node arguments' | 'NODE_OPTIONS';
/** Who set the cap node runs with: our relaunch (the value configured), else node's flags. */
export type CapSource = FlagSource | 'server.semi_space_size';

/** What the CLI does about the cap before it starts the server. */
export type SemiSpacePlan =
  /** server.semi_space_size = 0: V8 sizes the young generation itself. */
  | { action: 'off'; mib: 0 }
  /** Node already runs with a cap (ours after the relaunch, or the user's). */
  | { action: 'given'; mib: number; source: CapSource }
  /** V8's own maximum (`v8Mib`, estimated) is not above the cap: nothing to do. */
  | { action: 'within'; mib: number; v8Mib: number }
  /** Run node again: `args` for process.execve (args[0] is node itself). */
  | { action: 'relaunch'; mib: number; v8Mib: number; args: string[] }
  /** Node cannot be run again here: V8's own sizing stays; say why and how to cap it. */
  | { action: 'unsupported'; mib: number; v8Mib: number; why: string };

export interface SemiSpaceInput {
  /** server.semi_space_size, bytes (0: off). */
  capBytes: number;
  /** v8.getHeapStatistics().heap_size_limit, bytes. */
  heapSizeLimit: number;
  execPath: string;
  /** process.execArgv: node's own flags. */
  execArgv: readonly string[];
  /** process.argv: node, the script, its arguments. */
  argv: readonly string[];
  nodeOptions: string | undefined;
  /** Why process.execve cannot be called here, or null when it can. */
  cannotExec: string | null;
}

/** The last value of `re` in `text`, or null. */
function lastValue(re: RegExp, text: string): number | null {
  let value: number | null = null;
  for (const m of text.matchAll(re)) value = Number(m[1]);
  return value;
}

/** A flag's value as node applies it: its arguments win over NODE_OPTIONS. */
function flagValue(
  re: RegExp,
  execArgv: readonly string[],
  nodeOptions: string | undefined,
): { value: number; source: FlagSource } | null {
  const fromArgs = lastValue(re, execArgv.join(' '));
  if (fromArgs !== null) return { value: fromArgs, source: 'node arguments' };
  const fromEnv = lastValue(re, nodeOptions ?? '');
  return fromEnv === null ? null : { value: fromEnv, source: 'NODE_OPTIONS' };
}

/**
 * V8's own semi-space maximum, MiB, estimated from its heap limit (see LIMIT_SEMI_SPACES);
 * `maxOldSpaceMiB`: a --max-old-space-size node was given, or null.
 */
export function v8SemiSpaceMiB(heapSizeLimit: number, maxOldSpaceMiB: number | null): number {
  const limitMiB = heapSizeLimit / MIB;
  const semi =
    maxOldSpaceMiB === null
      ? limitMiB / LIMIT_SEMI_SPACES
      : (limitMiB - maxOldSpaceMiB) / YOUNG_SEMI_SPACES;
  return Math.max(0, Math.round(semi));
}

/** Decides whether node must be run again with the cap. Pure. */
export function planSemiSpace(input: SemiSpaceInput): SemiSpacePlan {
  // V8 takes whole MiB; the config check keeps the value at 1 MiB or more.
  const mib = input.capBytes === 0 ? 0 : Math.max(1, Math.floor(input.capBytes / MIB));
  const given = flagValue(SEMI_FLAG_RE, input.execArgv, input.nodeOptions);
  if (given !== null) {
    const ours = given.source === 'node arguments' && given.value === mib;
    return {
      action: 'given',
      mib: given.value,
      source: ours ? 'server.semi_space_size' : given.source,
    };
  }
  if (mib === 0) return { action: 'off', mib: 0 };
  const oldSpace = flagValue(OLD_FLAG_RE, input.execArgv, input.nodeOptions);
  const v8Mib = v8SemiSpaceMiB(input.heapSizeLimit, oldSpace?.value ?? null);
  if (v8Mib <= mib) return { action: 'within', mib, v8Mib };
  if (input.cannotExec !== null) {
    return { action: 'unsupported', mib, v8Mib, why: input.cannotExec };
  }
  const [, ...scriptAndArgs] = input.argv;
  return {
    action: 'relaunch',
    mib,
    v8Mib,
    args: [input.execPath, `--max-semi-space-size=${mib}`, ...input.execArgv, ...scriptAndArgs],
  };
}

/**
 * The plan for this process. `ownProcess`: it is the CLI's own (bin/askr-sidecar.js), never one
 * embedding the sidecar, which a relaunch would replace.
 */
export function semiSpacePlanOf(capBytes: number, ownProcess: boolean): SemiSpacePlan {
  return planSemiSpace({
    capBytes,
    heapSizeLimit: getHeapStatistics().heap_size_limit,
    execPath: process.execPath,
    execArgv: process.execArgv,
    argv: process.argv,
    nodeOptions: process.env['NODE_OPTIONS'],
    cannotExec: !ownProcess
      ? 'the sidecar runs inside another program'
      : process.execve === undefined || process.platform === 'win32'
        ? 'process.execve needs Node >= 22.15 and is not available on Windows'
        : null,
  });
}

/**
 * Replaces this process with node run with the cap; never returns when that works. Call it before
 * anything is started: no exit handler runs and nothing open survives but stdio. Returns the
 * error when execve(2) failed: the process goes on with V8's own sizing.
 */
export function relaunch(plan: Extract<SemiSpacePlan, { action: 'relaunch' }>): Error {
  try {
    if (process.execve === undefined) return new Error('process.execve is missing');
    process.execve(process.execPath, plan.args, process.env);
    return new Error('process.execve returned');
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}
