/**
 * The two configurations every server runs in for bench:proxy and bench:sse (issue 13: fair
 * benchmarks): "as-shipped" (each server's own defaults, access logs on for all) and "lean" (the
 * same with every access log off). One home for what each mode means for the sidecar's
 * environment and for nginx's access_log, so both benchmarks configure them identically.
 * Invariant: the two modes differ only in the access logs.
 */

export const MODES = ['as-shipped', 'lean'] as const;
export type ServerMode = (typeof MODES)[number];

/** One line per mode for the reports' headers. */
export const MODE_MEANING: Record<ServerMode, string> = {
  'as-shipped':
    "each server's defaults, access logs on (nginx: Debian's access_log, combined format, to a file; sidecar: its default config, JSON access log on stdout, sent to a file)",
  lean: 'the same with every access log off (nginx access_log off; sidecar log.access_log = false)',
};

/**
 * The inherited environment without ASKR_* variables, so the sidecar under test runs its
 * defaults whatever the shell that started the benchmark had set.
 */
export function envWithoutAskr(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('ASKR_')) env[name] = value;
  }
  return env;
}

/**
 * The sidecar's settings for `mode`, as ASKR_* variables on top of its defaults. Both modes
 * move only what would clash with other programs on a shared machine (the metrics listener's
 * default port 127.0.0.1:9100, the datagram socket's default /run/askr/askr.sock) into the run's
 * own port and directory; lean also turns the access log off. Metrics, log level, buffering and
 * every other setting keep their defaults.
 */
export function sidecarModeEnv(
  mode: ServerMode,
  where: { metricsListen: string; broadcastSocket: string },
): Record<string, string> {
  return {
    ASKR_METRICS_LISTEN: where.metricsListen,
    ASKR_BROADCAST_SOCKET: where.broadcastSocket,
    ...(mode === 'lean' ? { ASKR_LOG_ACCESS_LOG: 'false' } : {}),
  };
}

/**
 * nginx's access_log directive for `mode`: Debian's nginx.conf logs every request in the
 * combined format to a file (here `file`, inside the run's directory); lean turns it off.
 */
export function nginxAccessLog(mode: ServerMode, file: string): string {
  return mode === 'as-shipped' ? `access_log ${file};` : 'access_log off;';
}
