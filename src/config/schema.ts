/**
 * The configuration schema: every key of sidecar.toml with its type, default and one line of docs.
 * It is the single source for validation, env overrides (ASKR_<SECTION>_<KEY>), the defaults file
 * and the README's config reference (scripts/gen-config-docs.ts), so they cannot drift.
 * Durations resolve to milliseconds and sizes to bytes.
 */
import { parseRedisUrl } from '../cluster/redis-url.ts';

export type FieldKind =
  'string' | 'bool' | 'int' | 'duration' | 'size' | 'enum' | 'string[]' | 'map';

interface FieldBase<K extends FieldKind, T> {
  kind: K;
  /** Default, as written in TOML (durations and sizes as strings). */
  default: unknown;
  doc: string;
  /** Extra validation of the resolved value; returns what is allowed when it fails. */
  check?: (value: T) => string | null;
  /** Marks keys that SIGHUP cannot change (documented; reload reports them). */
  restart?: boolean;
  /**
   * Marks keys holding a secret: "value" is never printed (check-config --print and error
   * messages show "****" and its length), "url" has the password of its URL masked.
   */
  secret?: 'value' | 'url';
  /** Resolved type marker (never set at run time). */
  readonly __type?: T;
}

export type Field =
  | FieldBase<'string', string>
  | FieldBase<'bool', boolean>
  | FieldBase<'int', number>
  | FieldBase<'duration', number>
  | FieldBase<'size', number>
  | (FieldBase<'enum', string> & { values: readonly string[] })
  | FieldBase<'string[]', string[]>
  | FieldBase<'map', Record<string, string>>;

type Opts<T> = {
  check?: (value: T) => string | null;
  restart?: boolean;
  secret?: 'value' | 'url';
};

const str = (def: string, doc: string, o: Opts<string> = {}): FieldBase<'string', string> => ({
  kind: 'string',
  default: def,
  doc,
  ...o,
});
const bool = (def: boolean, doc: string, o: Opts<boolean> = {}): FieldBase<'bool', boolean> => ({
  kind: 'bool',
  default: def,
  doc,
  ...o,
});
const int = (def: number, doc: string, o: Opts<number> = {}): FieldBase<'int', number> => ({
  kind: 'int',
  default: def,
  doc,
  ...o,
});
const duration = (
  def: string,
  doc: string,
  o: Opts<number> = {},
): FieldBase<'duration', number> => ({ kind: 'duration', default: def, doc, ...o });
const size = (def: string, doc: string, o: Opts<number> = {}): FieldBase<'size', number> => ({
  kind: 'size',
  default: def,
  doc,
  ...o,
});
const oneOf = <const V extends readonly string[]>(
  values: V,
  def: V[number],
  doc: string,
  o: Opts<string> = {},
): FieldBase<'enum', V[number]> & { values: V } => ({
  kind: 'enum',
  values,
  default: def,
  doc,
  ...o,
});
const list = (
  def: string[],
  doc: string,
  o: Opts<string[]> = {},
): FieldBase<'string[]', string[]> => ({
  kind: 'string[]',
  default: def,
  doc,
  ...o,
});
const map = (
  def: Record<string, string>,
  doc: string,
  o: Opts<Record<string, string>> = {},
): FieldBase<'map', Record<string, string>> => ({ kind: 'map', default: def, doc, ...o });

const positive = (v: number): string | null => (v > 0 ? null : 'a value greater than 0');
const nonNegative = (v: number): string | null => (v >= 0 ? null : 'a value of 0 or more');
const listenAddress = (v: string): string | null =>
  /^unix:\/.+/.test(v) ||
  (/^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]*):\d{1,5}$/.test(v) &&
    Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535)
    ? null
    : '"HOST:PORT", "[IPv6]:PORT" or "unix:/absolute/path", with a port of 0-65535';
const fpmAddress = (v: string): string | null => (v === '' ? null : listenAddress(v));
// PHP never runs as root: php-fpm refuses uid/gid 0 for its workers unless -R, never passed.
const phpAccount = (v: string): string | null =>
  v === 'root' || v === '0'
    ? 'a user or group other than root: PHP never runs as root'
    : v === '' || /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(v)
      ? null
      : 'a user or group name, or a numeric id';
const octalMode = (v: string): string | null =>
  /^0?[0-7]{3}$/.test(v) ? null : 'an octal file mode such as "0660"';
const redisUrl = (v: string): string | null => {
  if (v === '') return null;
  try {
    parseRedisUrl(v);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
};
const urlPath = (v: string): string | null =>
  v.startsWith('/') ? null : 'a path starting with "/"';

export const schema = {
  server: {
    listen: str(
      '127.0.0.1:8080',
      'Address the HTTP server listens on: HOST:PORT, [IPv6]:PORT or unix:/path.',
      {
        check: listenAddress,
        restart: true,
      },
    ),
    root: str(
      'fixtures-php/demo/public',
      'Document root: static files are served from here and SCRIPT_FILENAME is resolved under it. Relative paths are resolved from the config file directory (or the working directory without one).',
      { restart: true },
    ),
    index: str(
      'index.php',
      'Front controller run for every request that is not an existing file (Laravel: index.php).',
    ),
    recipe: oneOf(
      ['laravel', 'symfony', 'wordpress', 'generic'] as const,
      'laravel',
      "The app's nginx recipe this server reproduces (routing, which scripts run, PATH_INFO, SERVER_SOFTWARE): laravel and symfony run only the front controller; wordpress and generic also run *.php named in the URL, redirect directories to a trailing slash and follow WordPress's permalink rules. See the README's recipes.",
    ),
    headers: map(
      {},
      'Response headers added to every response, errors included (nginx add_header … always), e.g. { "X-Frame-Options" = "SAMEORIGIN", "X-Content-Type-Options" = "nosniff" }. A header PHP sets itself is kept.',
    ),
    error_pages: map(
      {},
      'Pages for the errors the sidecar itself answers (not PHP\'s own), nginx error_page: status -> a path under the root, a static file or a *.php script (run as GET with the original REQUEST_URI), e.g. { "404" = "/404.html", "502" = "/50x.php" }. The status is kept.',
      {
        check: (v) =>
          Object.entries(v).every(
            ([k, p]) => /^[45]\d\d$/.test(k) && p.startsWith('/') && !p.split('/').includes('..'),
          )
            ? null
            : 'keys 4xx/5xx statuses, values paths under the root starting with "/" (no "..")',
      },
    ),
    follow_symlinks: bool(
      false,
      "Serve static files through symlinks that lead outside the document root (nginx follows them by default; Debian's WordPress needs it). PHP scripts are never run from outside the root.",
    ),
    software: str(
      '',
      'SERVER_SOFTWARE passed to PHP; empty: "askr-sidecar/VERSION", or for the wordpress recipe "nginx (askr-sidecar/VERSION)" so WordPress enables pretty permalinks.',
    ),
    php_scripts: bool(
      false,
      'Run an existing *.php file named in the URL directly (off for Laravel-style apps: only the front controller runs).',
    ),
    server_name: str(
      '',
      'SERVER_NAME passed to PHP; empty uses the request Host header without its port.',
    ),
    trusted_proxies: list(
      [],
      'Addresses or CIDRs (e.g. "10.0.0.0/8", "::1") whose X-Forwarded-For / X-Forwarded-Proto are believed for REMOTE_ADDR and HTTPS.',
    ),
    max_header_size: size(
      '16KiB',
      'Largest request head (request line and headers) accepted; larger gets 431.',
      { check: positive, restart: true },
    ),
    max_body_size: size(
      '8MiB',
      'Largest request body accepted; larger gets 413 (like nginx client_max_body_size).',
      { check: positive },
    ),
    body_memory_size: size(
      '1MiB',
      'A request body is buffered in memory up to this size, then in a temp file, before it is sent to FPM.',
      { check: nonNegative },
    ),
    temp_dir: str(
      '',
      'Directory for the temp files of buffered request bodies and PHP responses (unlinked as soon as they are opened, so none is ever left behind); empty uses the OS temp directory.',
    ),
    request_buffering: bool(
      true,
      'Read the whole request body (memory up to body_memory_size, then a temp file) before a PHP worker is taken, so a slow upload never holds a worker (nginx fastcgi_request_buffering).',
    ),
    stream_body_paths: list(
      [],
      'URL path prefixes (e.g. "/upload/huge") whose request bodies stream to PHP as they arrive instead of being buffered first: the worker waits on the client for these.',
      { check: (v) => (v.every((p) => p.startsWith('/')) ? null : 'paths starting with "/"') },
    ),
    body_timeout: duration(
      '60s',
      'Longest time between two reads of a request body; a slower client gets 408 (nginx client_body_timeout).',
      { check: positive },
    ),
    send_timeout: duration(
      '60s',
      'Longest time a write to a client may wait for the client to read; then the connection is closed (nginx send_timeout).',
      { check: positive },
    ),
    buffer_memory_limit: size(
      '256MiB',
      'Memory all buffered request bodies and PHP responses may hold together; beyond it they go to temp files.',
      { check: positive },
    ),
    max_connections: int(10000, 'Most client connections open at once; more are refused.', {
      check: positive,
    }),
    header_timeout: duration('30s', 'Time a client has to send the whole request head.', {
      check: positive,
    }),
    keep_alive_timeout: duration(
      '5s',
      'Idle time after which a keep-alive client connection is closed.',
      { check: positive },
    ),
    shutdown_timeout: duration(
      '30s',
      'On SIGTERM/SIGINT, how long in-flight PHP requests may run before the process exits anyway.',
      { check: nonNegative },
    ),
    semi_space_size: size(
      '16MiB',
      "Cap of V8's young generation, node's --max-semi-space-size (the young generation is two semi-spaces): a burst of connections grows it and V8 never gives it back (up to 2 x 64 MiB on a large host). `askr-sidecar serve` runs node again with the flag as it starts, where it lowers V8's own sizing (never on a small host or container); a --max-semi-space-size given to node (NODE_OPTIONS) wins. 0: V8's own sizing.",
      {
        check: (v) => (v === 0 || v >= 1024 * 1024 ? null : '0 or at least 1MiB'),
        restart: true,
      },
    ),
  },
  static: {
    enabled: bool(
      true,
      'Serve existing files under the root directly (never .php sources, never dotfiles except /.well-known/).',
    ),
    cache_control: str(
      '',
      'Cache-Control header for static files; empty sends none (browsers revalidate with ETag / Last-Modified).',
    ),
    precompressed: bool(
      true,
      'Serve a sibling FILE.br or FILE.gz when the client accepts that encoding.',
    ),
    internal_locations: map(
      {},
      'X-Accel-Redirect / X-Sendfile targets: URL prefix -> directory, e.g. { "/protected/" = "/srv/private" }. Only these may be sent by such a header.',
    ),
    open_file_cache: bool(
      true,
      "Cache file lookups (stat, realpath, misses) and small files' bytes in memory, as nginx's open_file_cache. A changed, deleted or replaced file is served at most open_file_cache_valid after the change.",
    ),
    open_file_cache_valid: duration(
      '1s',
      'How long a cached lookup is trusted before the file is checked again (nginx open_file_cache_valid); 0 checks on every request. Directory watches (fs.watch) usually drop a changed entry sooner.',
      { check: nonNegative },
    ),
    open_file_cache_max: int(
      10000,
      'Most paths kept in the open-file cache (least recently used go first).',
      {
        check: nonNegative,
      },
    ),
    open_file_cache_max_bytes: size(
      '64MiB',
      'Most file bytes kept in memory by the open-file cache, all files together.',
      {
        check: nonNegative,
      },
    ),
    open_file_cache_file_max: size(
      '64KiB',
      'Largest file whose bytes the open-file cache keeps; larger files are streamed from disk.',
      {
        check: nonNegative,
      },
    ),
    open_file_cache_errors: bool(
      true,
      'Also cache "no such file" and "permission denied" answers (nginx open_file_cache_errors), so a missing asset or a front-controller URL costs no stat within open_file_cache_valid.',
    ),
  },
  fastcgi: {
    address: str(
      '',
      'PHP-FPM address: "unix:/run/php/php-fpm.sock" or "127.0.0.1:9000". Empty starts and supervises a private php-fpm (see [fpm]).',
      {
        check: fpmAddress,
        restart: true,
      },
    ),
    pool_size: int(
      0,
      "Most FastCGI connections open at once. 0: [fpm].max_children for the managed php-fpm, else 64. Setting it (to the pool's pm.max_children or less) tells the sidecar the pool fits, which turns keep-alive on for an external FPM (see keep_alive).",
      { check: nonNegative },
    ),
    keep_alive: oneOf(
      ['auto', 'on', 'off'] as const,
      'auto',
      'Reuse FastCGI connections (FCGI_KEEP_CONN). An idle kept connection pins an FPM worker, so "auto" keeps them only where the pool is known to fit: the managed php-fpm, or pool_size set; otherwise one connection per request, as nginx does. See docs/fastcgi-pool.md.',
    ),
    buffering: bool(
      true,
      "Read PHP's whole response as fast as FPM sends it (memory up to buffer_size, then a temp file), so the worker is free at once whatever the client's speed (nginx fastcgi_buffering). X-Accel-Buffering: no, SSE passthrough and holds always stream.",
    ),
    buffer_size: size(
      '256KiB',
      'Memory one buffered PHP response may use before the rest goes to a temp file.',
      { check: positive },
    ),
    max_temp_file_size: size(
      '1GiB',
      'Largest temp file of one buffered response; past it the rest is passed to the client as it reads (the worker waits), as nginx does. 0 never uses temp files.',
      { check: nonNegative },
    ),
    queue_size: int(1024, 'Requests that may wait for a free connection; more get 503 at once.', {
      check: nonNegative,
    }),
    queue_timeout: duration('10s', 'Longest wait for a free connection before 503.', {
      check: positive,
    }),
    connect_timeout: duration('5s', 'Timeout to connect to FPM (502 when it fails).', {
      check: positive,
    }),
    send_timeout: duration(
      '60s',
      'Timeout between two successful writes of the request to FPM (504).',
      { check: positive },
    ),
    read_timeout: duration('60s', 'Timeout between two reads of the response from FPM (504).', {
      check: positive,
    }),
    idle_timeout: duration(
      '2s',
      'A kept connection unused this long is closed, which frees the FPM worker it pins for other clients of the pool.',
      { check: positive },
    ),
  },
  fpm: {
    status_path: str(
      '',
      "PHP-FPM's pm.status_path, scraped into askr_fpm_* metrics; empty: off for an external FPM, /askr-fpm-status for the managed one.",
      { restart: true },
    ),
    binary: str(
      '',
      'php-fpm binary for the managed mode; empty searches PATH and /usr/sbin for php-fpm, php-fpm8.x.',
      { restart: true },
    ),
    user: str(
      '',
      'User PHP runs as. Managed pool started as root: its workers run as this user (empty: www-data, or nobody where there is no www-data; never root). External FPM: the user its workers run as, so the datagram socket gets their group and is checked. A managed pool not started as root runs PHP as the sidecar user.',
      { check: phpAccount, restart: true },
    ),
    group: str(
      '',
      "Group of PHP's workers (empty: fpm.user's primary group; never root). The datagram socket's group defaults to it when the sidecar runs as root.",
      { check: phpAccount, restart: true },
    ),
    max_children: int(8, 'pm.max_children of the managed pool (static pm).', {
      check: positive,
      restart: true,
    }),
    max_requests: int(
      500,
      'pm.max_requests of the managed pool: workers are recycled after this many requests (0 never).',
      { check: nonNegative, restart: true },
    ),
    request_terminate_timeout: duration(
      '0',
      'request_terminate_timeout of the managed pool (0 off).',
      { check: nonNegative, restart: true },
    ),
    ini: map({}, 'php.ini values for the managed pool, e.g. { memory_limit = "256M" }.', {
      restart: true,
    }),
    env: map({}, 'Environment variables passed to PHP by the managed pool.', { restart: true }),
    restart_backoff_max: duration(
      '30s',
      'Longest pause between restarts of a managed php-fpm that keeps dying.',
      { check: positive, restart: true },
    ),
  },
  proxy: {
    routes: map(
      {},
      'Path prefixes proxied to HTTP upstreams instead of PHP, e.g. { "/app/" = "http://127.0.0.1:6001" } (WebSocket upgrades included; longest prefix wins).',
    ),
    connect_timeout: duration('5s', 'Timeout to connect to an HTTP upstream (502).', {
      check: positive,
    }),
    timeout: duration(
      '60s',
      'Idle timeout of a proxied request or WebSocket (504 before the response starts).',
      { check: positive },
    ),
  },
  log: {
    level: oneOf(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
      'info',
      'Log level.',
    ),
    access_log: bool(
      true,
      'One JSON line per request (method, path, status, bytes, duration, upstream duration, request id).',
    ),
    buffer: size(
      '8KiB',
      'Log lines gathered before one write to stdout (below 16KiB); 0 writes each line as soon as the previous write is done. Warnings and errors are written at once.',
      {
        check: (v) => (v >= 0 && v < 16 * 1024 ? null : 'a size from 0 to 16383 bytes'),
        restart: true,
      },
    ),
    flush_interval: duration('1s', 'Longest a buffered log line waits before it is written.', {
      check: positive,
      restart: true,
    }),
    max_buffer: size(
      '16MiB',
      'Log bytes held at most while stdout is blocked (a stalled reader); beyond, lines are dropped, counted (askr_log_dropped_lines_total) and reported in one warning once output resumes. 0: no bound.',
      { check: nonNegative, restart: true },
    ),
  },
  metrics: {
    enabled: bool(true, 'Serve Prometheus metrics, /healthz and /readyz on their own listener.', {
      restart: true,
    }),
    listen: str('127.0.0.1:9100', 'Address of the metrics listener.', {
      check: listenAddress,
      restart: true,
    }),
    fpm_status_interval: duration(
      '15s',
      'Interval of PHP-FPM status scrapes (see fpm.status_path).',
      {
        check: positive,
        restart: true,
      },
    ),
  },
  sse: {
    events_path: str(
      '/askr/events',
      'Path of the events endpoint (GET ?channel=NAME, repeatable).',
      { check: urlPath },
    ),
    publish_path: str('/askr/publish', 'Path of the HTTP publish endpoint.', { check: urlPath }),
    publish_token: str('', 'Bearer token for HTTP publish; empty turns HTTP publish off.', {
      secret: 'value',
    }),
    auth_path: str(
      '/broadcasting/auth',
      "The app's channel authorization route for private-/presence- channels (Laravel's shape).",
    ),
    allowed_origins: list(
      [],
      'Origins allowed by CORS on the events endpoint ("*" allows any, without credentials).',
    ),
    heartbeat_interval: duration('15s', 'Interval of the ": ping" comment sent to every stream.', {
      check: positive,
    }),
    retry: duration('3s', 'retry: sent to clients on connect (EventSource reconnection delay).', {
      check: nonNegative,
    }),
    history_size: int(1000, 'Events kept per channel for replay.', { check: nonNegative }),
    history_max_age: duration('10m', 'Oldest event kept for replay.', { check: nonNegative }),
    subscriber_queue_size: size(
      '1MiB',
      'Bytes that may wait for one slow subscriber; over it the subscriber is disconnected.',
      { check: positive },
    ),
    max_channels_per_connection: int(32, 'Channels one stream may subscribe to.', {
      check: positive,
    }),
    max_channel_name_length: int(128, 'Longest channel name, in bytes.', { check: positive }),
    max_connections: int(10000, 'Most SSE streams held at once.', { check: positive }),
    max_connections_per_ip: int(1000, 'Most SSE streams held at once for one client address.', {
      check: positive,
    }),
    state_file: str(
      '',
      'File the SSE history (epoch, ids, recent events) is saved to on shutdown and restored from at start, so clients resume across a restart; empty keeps history in memory only.',
      { restart: true },
    ),
    max_lifetime: duration(
      '0',
      'Close a stream after this long (clients reconnect and resume); 0 never.',
      { check: nonNegative },
    ),
    idle_timeout: duration('0', 'Close a stream that received no event for this long; 0 never.', {
      check: nonNegative,
    }),
    auth_batch_path: str(
      '/askr/auth',
      'Path of batch channel authorization (POST {"channels": [...]}): asks sse.auth_path once per private-/presence- channel and answers a signed subscription grant.',
      { check: urlPath },
    ),
    grant_secret: str(
      '',
      'Secret signing subscription grants (HMAC-SHA256; use 32+ random characters, e.g. `openssl rand -hex 32`); the same on every cluster node (env ASKR_SSE_GRANT_SECRET). Empty: a random secret per process, so grants do not survive a restart.',
      { secret: 'value' },
    ),
    grant_ttl: duration(
      '5m',
      'Life of a subscription grant: streams reconnect without asking PHP until then, and are ended when it expires.',
      { check: positive },
    ),
    whisper_path: str(
      '/askr/whisper',
      'Path of client events (POST {"channel", "event", "data"}): relayed to the other streams of a private-/presence- channel the grant covers.',
      { check: urlPath },
    ),
    whisper_rate: int(10, 'Whispers one socket id may send per second (429 over it).', {
      check: positive,
    }),
    whisper_max_size: size('10KiB', 'Largest whisper request body.', { check: positive }),
  },
  broadcast: {
    socket: str(
      '/run/askr/askr.sock',
      'Unix datagram socket PHP publishes to (askr_broadcast); empty turns it off. When this default cannot be created (not root), a private directory under the OS temp dir is used and logged.',
      { restart: true },
    ),
    socket_mode: str('0660', 'File mode of the datagram socket.', {
      check: octalMode,
      restart: true,
    }),
    socket_group: str(
      '',
      "Group owning the datagram socket (a name or gid; mode 0660 lets its members publish). Empty: as root, the group of PHP's workers (fpm.group, else fpm.user's, else www-data: the managed pool's and a stock php-fpm pool's); not root, the sidecar's own group. A warning at start names whatever would refuse PHP.",
      { restart: true },
    ),
    max_datagram_size: size('64KiB', 'Largest datagram accepted.', { check: positive }),
  },
  cluster: {
    redis_url: str(
      '',
      'Redis (or Valkey) shared by every sidecar and relay: "redis://[:password@]host:6379/0" or "rediss://…". Every publish goes through it, ids and history are cluster-wide, presence too. Empty: a single node.',
      { check: redisUrl, restart: true, secret: 'url' },
    ),
    key_prefix: str('askr:', 'Prefix of every Redis key and channel the cluster uses.', {
      check: (v) => (/^[\w:.-]{1,64}$/.test(v) ? null : '1-64 of A-Z a-z 0-9 _ : . -'),
      restart: true,
    }),
    node_id: str(
      '',
      "This sidecar's name in the cluster (presence, logs); empty: the hostname plus a random suffix.",
      {
        check: (v) => (v === '' || /^[\w.-]{1,64}$/.test(v) ? null : '1-64 of A-Z a-z 0-9 _ . -'),
        restart: true,
      },
    ),
    presence_ttl: duration(
      '30s',
      'A sidecar that stops refreshing its presence members for this long (it died) has them removed.',
      { check: positive, restart: true },
    ),
    relay_buffer: int(
      10000,
      'Events a relay keeps while Redis is away, sent in order once it is back; beyond it the oldest are dropped and counted (askr_relay_dropped_total). A sidecar delivers on its own node meanwhile.',
      { check: nonNegative },
    ),
  },
  mercure: {
    enabled: bool(
      false,
      'Serve the Mercure 1.0 protocol (subscribe, publish, active subscriptions) at mercure.path. Mercure topics and askr channels are one stream: askr_broadcast reaches Mercure subscribers and Mercure publishes reach /askr/events.',
      { restart: true },
    ),
    path: str('/.well-known/mercure', 'URL path of the hub.', { check: urlPath, restart: true }),
    audience: str(
      '',
      'Resource identifier tokens must carry in `aud`; empty: the hub URL as requested (scheme://host/.well-known/mercure).',
    ),
    issuers: list(
      [],
      'Accepted `iss` values of access tokens (self-issuing publishers use their own URL). Required when a key is set, unless compatibility is on.',
    ),
    jwt_key: str(
      '',
      'Key verifying both publishers\' and subscribers\' tokens: an HMAC secret (HS256/384/512) or a PEM public key (RSA, EC, Ed25519), inline or as "file:/path". Usually set by env ASKR_MERCURE_JWT_KEY.',
      { secret: 'value' },
    ),
    publisher_jwt_key: str('', "Publishers' key (overrides jwt_key for publishing); same forms.", {
      secret: 'value',
    }),
    subscriber_jwt_key: str(
      '',
      "Subscribers' key (overrides jwt_key for subscribing); same forms.",
      { secret: 'value' },
    ),
    jwt_algorithms: list(
      [],
      'Accepted signature algorithms; empty: those of the key type (HS256/384/512 for a secret, RS256/384/512 and PS256/384/512 for RSA, ES256/384/512 for EC, EdDSA for Ed25519). "none" is never accepted.',
    ),
    anonymous: bool(
      false,
      'Let subscribers without a token connect (they receive public updates only).',
    ),
    subscriptions: bool(
      false,
      'Active subscriptions: publish a subscription event when a subscription starts or ends, and serve the subscriptions API.',
    ),
    cookie_name: str(
      '__Secure-mercure_access_token',
      "Cookie carrying a browser's access token (EventSource cannot send Authorization). A `__Secure-` cookie needs HTTPS: use another name for plain-HTTP development.",
    ),
    cors_origins: list(
      [],
      'Origins allowed to subscribe cross-origin (with credentials: listed origins only; "*" allows any origin without credentials).',
    ),
    publish_origins: list(
      [],
      'Origins allowed to publish with the cookie from a browser (CSRF defence); a cookie-authorized publish from any other origin, or with neither Origin nor Referer, is refused.',
    ),
    compatibility: bool(
      false,
      'Accept Mercure 0.x clients too: `topic=` selectors (strings and URI Templates), the `mercure` token claim, tokens without typ/aud/exp/iss, the mercureAuthorization cookie, the `authorization` and `lastEventID` query parameters, 0.x subscription topics. Weakens token checks.',
    ),
    discovery: bool(
      false,
      'Add `Link: <mercure.path>; rel="mercure"` to every PHP response (Mercure discovery).',
    ),
    max_matchers: int(
      32,
      'Topic matchers (match, match_urlpattern, topic) one subscribe request may carry.',
      {
        check: positive,
      },
    ),
    max_topics: int(32, 'Topics one publish may carry.', { check: positive }),
    max_topic_length: size('2KiB', 'Longest topic or matcher accepted (bytes).', {
      check: positive,
    }),
    max_update_size: size('1MiB', 'Largest publish request body (form-encoded).', {
      check: positive,
    }),
    max_token_size: size('16KiB', 'Largest access token accepted.', { check: positive }),
    token_cache_size: int(
      1000,
      'Verified access tokens kept, least recently used first out: a token presented again (a publisher reusing its token, a reconnecting subscriber) skips the signature check; its exp and nbf are checked on every use, and a reload empties the cache. 0: verify every time.',
      { check: nonNegative },
    ),
    pattern_cache_size: int(
      1000,
      'Compiled URL patterns (and 0.x URI templates) kept, least recently used first out: subscribers and tokens with the same pattern share one compiled copy and its results. 0: each compiles its own.',
      { check: nonNegative },
    ),
  },
  grip: {
    publish_key: str(
      '',
      'Key of Pushpin-compatible publishing (POST /publish/ on the metrics listener; @fanoutio/grip\'s Publisher with control_uri pointed there): the Publisher\'s `key`. With control_iss it signs a JWT (HS256/384/512), verified here; without, it is sent as a bearer token and compared. "base64:…" for a binary key. Usually set by env ASKR_GRIP_PUBLISH_KEY. Publishing is off while this and publish_user are empty.',
      { secret: 'value' },
    ),
    publish_iss: str(
      '',
      "Required `iss` of publish JWTs (the Publisher's control_iss); empty accepts any. When set, the key is accepted only as a JWT signer, never as a bare bearer token.",
    ),
    publish_user: str(
      '',
      "Basic auth user of Pushpin-compatible publishing (the Publisher's user); needs publish_password.",
      { check: (v) => (v.includes(':') ? 'a user name without ":"' : null) },
    ),
    publish_password: str('', "Basic auth password (the Publisher's pass).", {
      secret: 'value',
    }),
    max_publish_size: size(
      '1MB',
      "Largest publish request body (Pushpin's push_in_http_max_body_size); larger gets 413.",
      { check: positive },
    ),
    max_items: int(1000, 'Items one publish request may carry; more gets 400.', {
      check: positive,
    }),
    message_wait: duration(
      '5s',
      "How long an item whose prev-id is not the channel's last id waits for its predecessor before it is sent anyway (Pushpin's message_wait); 0 sends every item at once.",
      { check: nonNegative },
    ),
    id_cache_ttl: duration(
      '60s',
      "An item whose id was seen on its channel this recently is dropped as a duplicate (Pushpin's id_cache_ttl); 0 off.",
      { check: nonNegative },
    ),
    max_pending_size: size(
      '16MiB',
      'Bytes of content that items waiting for their predecessor may hold together; an item beyond it (or beyond 100 waiting on one channel, as Pushpin) is dropped and counted.',
      { check: positive },
    ),
  },
} as const;

export type Schema = typeof schema;
type Resolved<F> = F extends { readonly __type?: infer T } ? T : never;

/** The resolved configuration: durations in ms, sizes in bytes. */
export type SidecarConfig = {
  -readonly [S in keyof Schema]: { -readonly [K in keyof Schema[S]]: Resolved<Schema[S][K]> };
} & {
  /** Where the values came from, for messages (file path, or "<defaults>"). */
  source: string;
};
