/**
 * What /proc says of the sidecar: open fds, CPU time, and where its anonymous resident memory
 * sits (glibc's main arena, its per-thread arenas, MADV_FREE pages). Linux only.
 */
import { readFileSync, readdirSync } from 'node:fs';

const MIB = 1024 * 1024;
/** glibc's non-main arenas are mmap'd regions of HEAP_MAX_SIZE, aligned to it (64 MiB on 64-bit). */
const ARENA_ALIGN = 64 * MIB;

export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** CPU seconds (user + system) of the process so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the ")" closing the command name: utime is the 12th, stime the 13th.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ
}

/**
 * Where anonymous resident memory sits, from /proc/PID/smaps: glibc's main arena ([heap]), its
 * per-thread arenas (a writable mapping starting on a 64 MiB boundary: a V8 page landing on one
 * would be miscounted, which the V8 column next to it makes visible), and RssAnon in all.
 */
export function nativeMemory(pid: number): {
  rssAnon: number;
  mallocMain: number;
  mallocThreads: number;
  lazyFree: number;
} {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssAnon = Number(/^RssAnon:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const lazyFree = Number(/^LazyFree:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024;
  let mallocMain = 0;
  let mallocThreads = 0;
  let kind: 'main' | 'thread' | null = null;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-[0-9a-f]+ (\S+) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (head !== null) {
      const [, start = '0', perms = '', inode = '0', name = ''] = head;
      if (name === '[heap]') kind = 'main';
      else if (
        name === '' &&
        inode === '0' &&
        perms.startsWith('rw') &&
        Number(BigInt(`0x${start}`) % BigInt(ARENA_ALIGN)) === 0
      ) {
        kind = 'thread';
      } else kind = null;
      continue;
    }
    if (kind !== null && line.startsWith('Rss:')) {
      const bytes = Number(/(\d+)/.exec(line)?.[1] ?? 0) * 1024;
      if (kind === 'main') mallocMain += bytes;
      else mallocThreads += bytes;
      kind = null;
    }
  }
  return { rssAnon, mallocMain, mallocThreads, lazyFree };
}
