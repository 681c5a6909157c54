/**
 * Renders the php-fpm configuration of the managed pool (pure: strings in, string out) and the
 * environment the master is started with. Invariants: every user-supplied value is validated or
 * escaped so it cannot inject a directive; environment values never pass through FPM's parser.
 */
import { ErrorCodes, SidecarError } from '../errors.ts';

/** What the managed pool needs; paths are absolute. */
export interface FpmConfigInput {
  socketPath: string;
  pidFile: string;
  /** FPM's error_log file; with -O (as the sidecar starts it) FPM logs to stderr instead. */
  errorLog: string;
  maxChildren: number;
  maxRequests: number;
  requestTerminateTimeoutMs: number;
  ini: Record<string, string>;
  /** Names passed to workers as `env[NAME] = $NAME` (values travel in the master's environment). */
  envNames: readonly string[];
  statusPath?: string | undefined;
  /**
   * Set when the sidecar runs as root: the workers' user and group (never root), and who owns
   * the listen socket (the sidecar's uid and gid). Unset: FPM runs PHP as the sidecar's user.
   */
  workers?: { user: string; group: string; listenUid: number; listenGid: number } | undefined;
}

/** Environment variables workers get by default when the sidecar has them (none carries secrets). */
const DEFAULT_WORKER_ENV = ['PATH', 'TMPDIR', 'TZ', 'LANG', 'LC_ALL'] as const;
/** Variables of the sidecar that must not reach the FPM master (they change its behaviour). */
const MASTER_ENV_DROP = ['NOTIFY_SOCKET', 'FPM_SOCKETS'] as const;
const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A user or group name as useradd/groupadd accept it (Samba's trailing $ too), or an id. */
const ACCOUNT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/;
const INI_NAME = /^[A-Za-z0-9_.-]+$/;

function invalid(message: string): SidecarError {
  return new SidecarError(ErrorCodes.FPM_START, message);
}

/**
 * Quotes a value for FPM's ini parser (ZEND_INI_SCANNER_NORMAL): inside double quotes `\"`, `\\`
 * and `\$` are the escapes, and an unescaped `${X}` would expand an environment variable.
 * FPM itself later replaces `$pool` in php_value strings, which no escape prevents: rejected.
 */
export function quoteIniValue(name: string, value: string): string {
  if (/[\0\r\n]/.test(value)) {
    throw invalid(`[fpm].ini "${name}": the value must not contain NUL, CR or LF`);
  }
  if (value.includes('$pool')) {
    throw invalid(`[fpm].ini "${name}": php-fpm replaces "$pool" in values; it cannot be passed`);
  }
  return '"' + value.replace(/[\\"$]/g, (c) => '\\' + c) + '"';
}

/**
 * The environment of the FPM master and the names its workers receive. With `clear_env = yes`
 * workers see only `env[...]` names, so the sidecar's own secrets (publish token, Redis password)
 * never reach PHP; `env[NAME] = $NAME` makes FPM copy the value from the master's environment,
 * which sidesteps FPM's quoting rules (a literal value starting with `$` would be read as a
 * reference, and `$pool` would be replaced).
 */
export function fpmEnvironment(
  sidecarEnv: NodeJS.ProcessEnv,
  poolEnv: Record<string, string>,
): { masterEnv: Record<string, string>; workerNames: string[] } {
  const masterEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(sidecarEnv)) {
    if (v !== undefined && !(MASTER_ENV_DROP as readonly string[]).includes(k)) masterEnv[k] = v;
  }
  masterEnv['PATH'] ??= FALLBACK_PATH;
  const names = new Set<string>(DEFAULT_WORKER_ENV.filter((n) => masterEnv[n] !== undefined));
  for (const [name, value] of Object.entries(poolEnv)) {
    if (!ENV_NAME.test(name)) {
      throw invalid(`[fpm].env: "${name}" is not a valid environment variable name`);
    }
    if (value.includes('\0')) throw invalid(`[fpm].env "${name}": the value must not contain NUL`);
    masterEnv[name] = value;
    names.add(name);
  }
  return { masterEnv, workerNames: [...names] };
}

/**
 * The pool's user/group lines. As root FPM switches workers to `user`/`group` (initgroups
 * included) and refuses uid or gid 0 without -R, which the sidecar never passes: PHP never runs
 * as root. Without them (not root) FPM keeps the sidecar's user, as it must.
 */
function workerLines(workers: FpmConfigInput['workers']): string[] {
  if (workers === undefined) return [];
  for (const [key, name] of [
    ['user', workers.user],
    ['group', workers.group],
  ] as const) {
    if (!ACCOUNT_NAME.test(name)) throw invalid(`fpm.${key} is not a valid name: ${name}`);
    if (name === 'root' || name === '0')
      throw invalid(`fpm.${key} = ${name}: PHP must never run as root`);
  }
  for (const id of [workers.listenUid, workers.listenGid]) {
    if (!Number.isSafeInteger(id) || id < 0) throw invalid(`invalid listen socket owner id ${id}`);
  }
  return [
    `user = ${workers.user}`,
    `group = ${workers.group}`,
    // The master (root) creates the socket; it stays the sidecar's, so workers cannot be reached
    // by anyone else, and a php-fpm default never hands it to the workers' user.
    `listen.owner = ${workers.listenUid}`,
    `listen.group = ${workers.listenGid}`,
  ];
}

/** Renders the whole php-fpm.conf (global section and the `[askr]` pool). Throws FPM_START on bad input. */
export function renderFpmConfig(input: FpmConfigInput): string {
  const intAtLeast = (name: string, v: number, min: number): number => {
    if (!Number.isSafeInteger(v) || v < min)
      throw invalid(`[fpm].${name} must be an integer >= ${min}, got ${v}`);
    return v;
  };
  const maxChildren = intAtLeast('max_children', input.maxChildren, 1);
  const maxRequests = intAtLeast('max_requests', input.maxRequests, 0);
  if (!(input.requestTerminateTimeoutMs >= 0)) {
    throw invalid(
      `[fpm].request_terminate_timeout must be >= 0, got ${input.requestTerminateTimeoutMs}`,
    );
  }
  // FPM counts this timeout in whole seconds; round up so a configured 1500ms is never cut to 1s.
  const terminateSeconds = Math.ceil(input.requestTerminateTimeoutMs / 1000);
  for (const p of [input.socketPath, input.pidFile, input.errorLog]) {
    if (/[\0\r\n"]/.test(p)) throw invalid(`php-fpm run path contains an unusable character: ${p}`);
  }

  const lines = [
    '; Generated by askr-sidecar for its managed php-fpm; rewritten on every start.',
    '[global]',
    `pid = "${input.pidFile}"`,
    `error_log = "${input.errorLog}"`,
    // NOTICE lines ("fpm is running", "ready to handle connections", child recycled by
    // pm.max_requests) would be forwarded at warn on every start; warnings and errors still come.
    'log_level = warning',
    'daemonize = no',
    // With the default 0, FPM's "graceful" SIGQUIT is followed by SIGTERM at once and busy workers
    // die mid-request. Give them time; stop() escalates on its own timer well before this.
    'process_control_timeout = 300',
    '',
    '[askr]',
    `listen = "${input.socketPath}"`,
    // Only the sidecar's user may connect; the directory is 0700 as well.
    'listen.mode = 0600',
    ...workerLines(input.workers),
    'pm = static',
    `pm.max_children = ${maxChildren}`,
    `pm.max_requests = ${maxRequests}`,
    `request_terminate_timeout = ${terminateSeconds}`,
    // Workers' stderr (Laravel's "stderr" log channel, php://stderr) reaches the sidecar's log,
    // undecorated so each line arrives as PHP wrote it.
    'catch_workers_output = yes',
    'decorate_workers_output = no',
    'clear_env = yes',
  ];
  if (input.statusPath !== undefined) {
    if (!/^\/[\x21-\x7e]*$/.test(input.statusPath) || input.statusPath.includes('"')) {
      throw invalid(
        `FPM status path must start with "/" and be printable ASCII: ${input.statusPath}`,
      );
    }
    lines.push(`pm.status_path = "${input.statusPath}"`);
  }
  for (const name of input.envNames) {
    if (!ENV_NAME.test(name))
      throw invalid(`[fpm].env: "${name}" is not a valid environment variable name`);
    lines.push(`env[${name}] = $${name}`);
  }

  // PHP errors must reach the sidecar as FCGI_STDERR records (logged there with the request id):
  // that needs log_errors on, fastcgi.logging on and no error_log file. These are php_value
  // defaults, so [fpm].ini (and the script, where PHP allows) may still change them.
  const ini: Record<string, string> = { log_errors: '1', 'fastcgi.logging': '1', ...input.ini };
  for (const [name, value] of Object.entries(ini)) {
    if (!INI_NAME.test(name)) throw invalid(`[fpm].ini: "${name}" is not a valid php.ini name`);
    // php_value rather than php_admin_value: like a php.ini line, scripts may still ini_set() it
    // (composer and Laravel raise memory_limit); FPM applies it at either level without checks.
    lines.push(`php_value[${name}] = ${quoteIniValue(name, value)}`);
  }
  return lines.join('\n') + '\n';
}
