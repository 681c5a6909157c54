/**
 * `check-config`'s look at this machine, after the config itself validated: the document root
 * exists (an error: nothing can be served), the front controller is there, and PHP-FPM answers at
 * fastcgi.address or a php-fpm binary exists for the managed mode (warnings: FPM may start after
 * the sidecar, or on another host). Every finding names its key, its value (secrets masked) and
 * the source of that value. Bounded: each network probe gives up after a short timeout.
 */
import { constants as fsConstants } from 'node:fs';
import { access, lstat, stat } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { parseFcgiAddress, type FcgiTarget } from '../fastcgi/address.ts';
import { RecordType } from '../fastcgi/constants.ts';
import { decodeNameValuePairs, encodeNameValuePairs } from '../fastcgi/name-value.ts';
import { encodeRecord, RecordDecoder } from '../fastcgi/record-codec.ts';
import { findPhpFpm } from '../fpm/find-php-fpm.ts';
import type { LoadedConfig } from './load.ts';
import { describeValue } from './mask.ts';
import { effectiveOrigin, originLabel } from './provenance.ts';
import { schema, type Field } from './schema.ts';
import { suggestEnvName } from './suggest.ts';

/** One problem found; `error` fails check-config (exit 2), `warning` is printed only. */
export interface Finding {
  level: 'error' | 'warning';
  /** "section.key", or the environment variable for an unused ASKR_* name. */
  key: string;
  /** The whole sentence: source, key = value, and the problem. */
  message: string;
}

/** Longest wait for FPM to accept a connection and to answer FCGI_GET_VALUES. */
export const FPM_PROBE_TIMEOUT_MS = 2000;

/** ASKR_* variables that name no config key but are one or two typos from one (warnings). */
export function checkUnusedEnv(loaded: LoadedConfig): Finding[] {
  const out: Finding[] = [];
  for (const name of loaded.unusedEnv) {
    const near = suggestEnvName(name);
    if (near === null) continue;
    out.push({
      level: 'warning',
      key: name,
      message: `environment ${name}: not a config key, so it is ignored; did you mean ${near}?`,
    });
  }
  return out;
}

/** Checks the root, the front controller and FPM on this machine. */
export async function checkMachine(
  loaded: LoadedConfig,
  options: { fpmTimeoutMs?: number } = {},
): Promise<Finding[]> {
  const out: Finding[] = [];
  const finding = (
    level: Finding['level'],
    path: string,
    value: unknown,
    problem: string,
  ): void => {
    const origin = effectiveOrigin(loaded.provenance, path);
    const [section = '', key = ''] = path.split('.');
    const field = (schema as Record<string, Record<string, Field>>)[section]?.[key];
    const shown = `${path} = ${describeValue(field, value)}`;
    out.push({
      level,
      key: path,
      message:
        origin.kind === 'default'
          ? `${shown} (the default): ${problem}`
          : `${originLabel(origin)}: ${shown}: ${problem}`,
    });
  };
  const { server, fastcgi, fpm } = loaded.config;

  const root = await stat(server.root).catch((err: unknown) => err as NodeJS.ErrnoException);
  if (root instanceof Error) {
    finding(
      'error',
      'server.root',
      server.root,
      root.code === 'ENOENT'
        ? 'the directory does not exist'
        : `cannot open the directory (${root.code ?? root.message})`,
    );
  } else if (!root.isDirectory()) {
    finding('error', 'server.root', server.root, 'not a directory');
  } else if (!(await readable(server.root))) {
    finding('error', 'server.root', server.root, `not readable by this user (uid ${uid()})`);
  } else {
    const front = join(server.root, server.index);
    if (
      !(await lstat(front).then(
        () => true,
        () => false,
      ))
    ) {
      finding(
        'warning',
        'server.index',
        server.index,
        `${front} does not exist: requests that are not static files will fail`,
      );
    }
  }

  if (fastcgi.address === '') {
    if (findPhpFpm(fpm.binary) === null) {
      finding(
        'warning',
        fpm.binary === '' ? 'fastcgi.address' : 'fpm.binary',
        fpm.binary === '' ? fastcgi.address : fpm.binary,
        fpm.binary === ''
          ? 'empty, so the sidecar starts its own php-fpm, but no php-fpm binary is on PATH, in /usr/sbin or /usr/local/sbin: install php-fpm, set fpm.binary, or set fastcgi.address to a running FPM'
          : 'no such executable php-fpm binary: install it or fix the path',
      );
    }
  } else {
    const problem = await probeFpm(
      parseFcgiAddress(fastcgi.address),
      Math.min(fastcgi.connect_timeout, options.fpmTimeoutMs ?? FPM_PROBE_TIMEOUT_MS),
    );
    if (problem !== null) finding('warning', 'fastcgi.address', fastcgi.address, problem);
  }
  return out;
}

const uid = (): string => String(process.getuid?.() ?? '?');

async function readable(dir: string): Promise<boolean> {
  return access(dir, fsConstants.R_OK | fsConstants.X_OK).then(
    () => true,
    () => false,
  );
}

/**
 * Connects to FPM and asks FCGI_GET_VALUES (a management record php-fpm answers without running
 * PHP): null when a FastCGI answer comes back, else what went wrong, in words.
 */
export async function probeFpm(target: FcgiTarget, timeoutMs: number): Promise<string | null> {
  if (target.kind === 'unix') {
    const st = await lstat(target.path).catch((err: unknown) => err as NodeJS.ErrnoException);
    if (st instanceof Error) {
      return st.code === 'ENOENT'
        ? `nothing at ${target.path} (ENOENT): is php-fpm running, with listen = ${target.path} in its pool?`
        : `cannot reach ${target.path} (${st.code ?? st.message})`;
    }
    if (!st.isSocket())
      return `${target.path} is not a socket: check php-fpm's listen = in its pool`;
  }
  const where = target.kind === 'unix' ? target.path : `${target.host}:${target.port}`;
  const result = await getValues(target, timeoutMs);
  switch (result) {
    case 'answered':
      return null;
    case 'ECONNREFUSED':
      return target.kind === 'unix'
        ? `${where} refuses connections (ECONNREFUSED): the socket file is left from a php-fpm that is not running`
        : `${where} refuses connections (ECONNREFUSED): php-fpm is not running there, or listens on another port`;
    case 'EACCES':
      return `permission denied connecting to ${where} (EACCES): php-fpm's listen.owner, listen.group and listen.mode must let uid ${uid()} connect`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `the host name does not resolve here (${result}): in Docker or Kubernetes a service name resolves only inside its network`;
    case 'connect timeout':
      return `no answer to a connect within ${timeoutMs} ms (a firewall, or a host that is down)`;
    case 'answer timeout':
      return `accepts connections but sent no FastCGI answer within ${timeoutMs} ms: every php-fpm worker busy, or not a FastCGI server`;
    case 'not fastcgi':
      return `answers, but not in FastCGI: is this an HTTP port rather than php-fpm's?`;
    default:
      return `${where}: ${result}`;
  }
}

/** 'answered', 'connect timeout', 'answer timeout', 'not fastcgi', or the errno of the failure. */
type GetValuesResult = string;

function getValues(target: FcgiTarget, timeoutMs: number): Promise<GetValuesResult> {
  return new Promise((resolve) => {
    const socket =
      target.kind === 'unix'
        ? net.connect({ path: target.path })
        : net.connect({ host: target.host, port: target.port });
    let connected = false;
    const finish = (result: GetValuesResult): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => finish(connected ? 'answer timeout' : 'connect timeout'),
      timeoutMs,
    );
    const decoder = new RecordDecoder((record) => {
      if (record.type !== RecordType.FCGI_GET_VALUES_RESULT) return finish('not fastcgi');
      // The pairs must decode: anything else is not a FastCGI peer.
      try {
        decodeNameValuePairs(record.content);
        finish('answered');
      } catch {
        finish('not fastcgi');
      }
    });
    socket.once('connect', () => {
      connected = true;
      socket.write(
        encodeRecord(
          RecordType.FCGI_GET_VALUES,
          0,
          encodeNameValuePairs([
            ['FCGI_MAX_CONNS', ''],
            ['FCGI_MPXS_CONNS', ''],
          ]),
        ),
      );
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch {
        // A bad FastCGI version byte: an HTTP server answering "HTTP/1.1 400" lands here.
        finish('not fastcgi');
      }
    });
    socket.once('end', () => finish(connected ? 'not fastcgi' : 'ECONNRESET'));
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
  });
}
