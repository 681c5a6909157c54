/**
 * sse.state_file: the hub's epoch, seq and histories written on graceful shutdown and read at
 * start, so ids continue and a client reconnecting with Last-Event-ID after a restart (or a
 * rolling deploy on the same volume) gets its missed events instead of askr:lost. A missing,
 * unreadable or malformed file is logged and ignored: the hub starts fresh.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { toError } from '../errors.ts';
import type { HubState } from './hub.ts';
import type { EventRecord } from './event-history.ts';
import { isPrivateChannel, isSocketId } from './channel-rules.ts';

interface StoredEntry {
  seq: number;
  time: number;
  publisherId?: string;
  rank: number;
  frame: string;
  /** The event itself (Mercure streams replay from it); shared by seq across channels. */
  record?: StoredRecord;
}

interface StoredRecord {
  channels: string[];
  data: string;
  event?: string;
  privateField: boolean;
  mercureId?: string;
  retryMs?: number;
  /** The publisher's socket id: after a restart its own stream still does not get the event. */
  socket?: string;
  /** GRIP http-stream content (EventRecord.raw). */
  raw?: true;
}

interface StoredState {
  version: 1;
  savedAt: string;
  epoch: string;
  seq: number;
  channels: Array<{ name: string; evictedMaxSeq: number; entries: StoredEntry[] }>;
  tombstones: HubState['tombstones'];
}

export async function saveHubState(path: string, state: HubState): Promise<void> {
  const stored: StoredState = {
    version: 1,
    savedAt: new Date().toISOString(),
    epoch: state.epoch,
    seq: state.seq,
    channels: state.channels.map((c) => ({
      name: c.name,
      evictedMaxSeq: c.evictedMaxSeq,
      entries: c.entries.map((e) => ({
        seq: e.seq,
        time: e.time,
        ...(e.publisherId === undefined ? {} : { publisherId: e.publisherId }),
        rank: e.rank,
        frame: e.frame.toString('base64'),
        ...(e.record === undefined ? {} : { record: storeRecord(e.record) }),
      })),
    })),
    tombstones: state.tombstones,
  };
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(stored), { mode: 0o600 });
  await rename(tmp, path); // atomic: a crash mid-write never leaves a torn file
}

function storeRecord(r: EventRecord): StoredRecord {
  return {
    channels: [...r.channels],
    data: r.data.toString('base64'),
    ...(r.event === undefined ? {} : { event: r.event }),
    privateField: r.privateField,
    ...(r.mercureId === undefined ? {} : { mercureId: r.mercureId }),
    ...(r.retryMs === undefined ? {} : { retryMs: r.retryMs }),
    ...(r.socket === undefined ? {} : { socket: r.socket }),
    ...(r.raw === true ? { raw: true as const } : {}),
  };
}

/** The stored record as the hub holds it (one object per seq); undefined when malformed. */
function loadRecord(seq: number, r: StoredRecord | undefined): EventRecord | undefined {
  if (r === undefined || !Array.isArray(r.channels) || typeof r.data !== 'string') return undefined;
  if (!r.channels.every((c) => typeof c === 'string')) return undefined;
  const privateField = r.privateField;
  return {
    seq,
    channels: r.channels,
    data: Buffer.from(r.data, 'base64'),
    event: typeof r.event === 'string' ? r.event : undefined,
    privateField,
    private: privateField || r.channels.some(isPrivateChannel),
    mercureId: typeof r.mercureId === 'string' ? r.mercureId : undefined,
    retryMs: isInt(r.retryMs) ? r.retryMs : undefined,
    socket: typeof r.socket === 'string' && isSocketId(r.socket) ? r.socket : undefined,
    ...(r.raw === true ? { raw: true } : {}),
  };
}

const isInt = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Reads a state file; returns null (after logging why) when there is none or it is unusable. */
export async function loadHubState(path: string, logger: Logger): Promise<HubState | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      logger.warn(
        { path, err: toError(err).message },
        'cannot read sse.state_file; starting with empty history',
      );
    }
    return null;
  }
  try {
    const doc = JSON.parse(text) as Partial<StoredState>;
    if (
      doc.version !== 1 ||
      typeof doc.epoch !== 'string' ||
      !isInt(doc.seq) ||
      !Array.isArray(doc.channels)
    ) {
      throw new Error('not a version 1 state file');
    }
    const records = new Map<number, EventRecord | undefined>();
    const recordOf = (seq: number, stored: StoredRecord | undefined): EventRecord | undefined => {
      if (!records.has(seq)) records.set(seq, loadRecord(seq, stored));
      return records.get(seq);
    };
    const channels = doc.channels.map((c) => {
      if (typeof c.name !== 'string' || !isInt(c.evictedMaxSeq) || !Array.isArray(c.entries))
        throw new Error('bad channel entry');
      return {
        name: c.name,
        evictedMaxSeq: c.evictedMaxSeq,
        entries: c.entries.map((e) => {
          if (!isInt(e.seq) || !isInt(e.time) || !isInt(e.rank) || typeof e.frame !== 'string')
            throw new Error('bad history entry');
          const record = recordOf(e.seq, e.record);
          return {
            seq: e.seq,
            time: e.time,
            publisherId: e.publisherId,
            rank: e.rank,
            frame: Buffer.from(e.frame, 'base64'),
            ...(record === undefined ? {} : { record }),
          };
        }),
      };
    });
    const t = doc.tombstones;
    const tombstones =
      t !== undefined && isInt(t.floor) && Array.isArray(t.channels)
        ? t
        : { floor: doc.seq, channels: [] };
    logger.info(
      { path, epoch: doc.epoch, seq: doc.seq, channels: channels.length },
      'SSE history restored from sse.state_file',
    );
    return { epoch: doc.epoch, seq: doc.seq, channels, tombstones };
  } catch (err) {
    logger.warn(
      { path, err: toError(err).message },
      'sse.state_file is malformed; starting with empty history',
    );
    return null;
  }
}
