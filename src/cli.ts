/**
 * The `askr-sidecar` command: `serve`, `relay`, `check-config`, `--help`, `--version`. Parses
 * flags, loads the config (exit 2 with the precise message on a bad one), starts the sidecar and
 * handles signals: SIGTERM/SIGINT drain then exit 0 (a second one exits at once), SIGHUP reloads.
 * `check-config` also runs the start's own validation and looks at this machine (root, FPM).
 */
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { checkMachine, checkUnusedEnv, type Finding } from './config/checks.ts';
import { loadConfigWithProvenance, type LoadedConfig } from './config/load.ts';
import { renderEffectiveConfig } from './config/print.ts';
import type { SidecarConfig } from './config/schema.ts';
import { isSidecarError, toError } from './errors.ts';
import type { Relay } from './cluster/relay.ts';
import { createLogger, createLogOutput } from './observability/logger.ts';
import { VERSION } from './version.ts';
import { parseUpstreamRoutes } from './http/upstream-routes.ts';
import { relaunch, semiSpacePlanOf, type SemiSpacePlan } from './young-generation.ts';

const HELP = `askr-sidecar ${VERSION}: HTTP front server for PHP-FPM with Server-Sent Events

Usage:
  askr-sidecar serve [--config FILE] [--listen HOST:PORT] [--root DIR] [--fpm ADDRESS]
  askr-sidecar relay [--config FILE] [--redis URL] [--socket PATH]
  askr-sidecar check-config [--config FILE] [--print] [--static]
  askr-sidecar --help | --version

Commands:
  serve          Start the server (the default command).
  relay          Run only the datagram socket and forward every publish to the cluster (Redis),
                 for queue-worker and scheduler containers that run no sidecar.
  check-config   Validate the configuration (file, ASKR_* environment, flags) as the start does,
                 check this machine (server.root exists: error; FPM answers at fastcgi.address, or
                 a php-fpm binary exists for the managed mode: warning) and exit: 0 OK, 2 invalid.

Options:
  -c, --config FILE     TOML config file (default: ./sidecar.toml when it exists, else built-in defaults)
  -l, --listen ADDR     HTTP listen address, e.g. 0.0.0.0:8080 or unix:/run/askr/http.sock  [server.listen]
  -r, --root DIR        Document root  [server.root]
  -f, --fpm ADDRESS     PHP-FPM address, e.g. unix:/run/php/php-fpm.sock or 127.0.0.1:9000;
                        omit to start and supervise a private php-fpm  [fastcgi.address]
      --redis URL       Redis shared by the cluster, e.g. redis://redis:6379/0  [cluster.redis_url]
      --socket PATH     Datagram socket PHP publishes to  [broadcast.socket]
      --log-level LVL   fatal|error|warn|info|debug|trace|silent  [log.level]
      --print           check-config: print the effective configuration, each value with its
                        source (default, file:line, ASKR_* variable, flag); secrets masked
      --static          check-config: validate the configuration only, not this machine (CI, an
                        image build, a host without the app or FPM)
  -h, --help            Show this help
  -v, --version         Show the version

Every key of sidecar.toml can also be set with ASKR_<SECTION>_<KEY>, e.g. ASKR_SERVER_LISTEN.
Precedence: flags > environment > config file > defaults.
`;

interface Parsed {
  command: 'serve' | 'relay' | 'check-config' | 'help' | 'version';
  configFile: string | undefined;
  /** How the file was chosen, for --print: "--config", the implicit ./sidecar.toml, or null. */
  configChosenBy: string | null;
  overrides: Record<string, unknown>;
  /** The flag of each override ("server.listen" → "--listen"), for messages and --print. */
  flags: Record<string, string>;
  print: boolean;
  static: boolean;
}

/** The flags that set config keys: flag name → "section.key". */
const KEY_FLAGS = {
  listen: 'server.listen',
  root: 'server.root',
  fpm: 'fastcgi.address',
  'log-level': 'log.level',
  redis: 'cluster.redis_url',
  socket: 'broadcast.socket',
} as const;

export function parseCli(argv: string[]): Parsed {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      listen: { type: 'string', short: 'l' },
      root: { type: 'string', short: 'r' },
      fpm: { type: 'string', short: 'f' },
      'log-level': { type: 'string' },
      redis: { type: 'string' },
      socket: { type: 'string' },
      print: { type: 'boolean' },
      static: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
  const none = {
    configFile: undefined,
    configChosenBy: null,
    overrides: {},
    flags: {},
    print: false,
    static: false,
  };
  if (values.help === true) return { command: 'help', ...none };
  if (values.version === true) return { command: 'version', ...none };
  const command = positionals[0] ?? 'serve';
  if (command !== 'serve' && command !== 'relay' && command !== 'check-config') {
    throw new UsageError(
      `unknown command "${command}"; expected "serve", "relay" or "check-config"`,
    );
  }
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1] ?? ''}"`);
  for (const option of ['print', 'static'] as const) {
    if (values[option] === true && command !== 'check-config') {
      throw new UsageError(`--${option} is an option of check-config`);
    }
  }
  const overrides: Record<string, unknown> = {};
  const flags: Record<string, string> = {};
  for (const [flag, path] of Object.entries(KEY_FLAGS)) {
    const value = values[flag as keyof typeof KEY_FLAGS];
    if (value === undefined) continue;
    overrides[path] = value;
    flags[path] = `--${flag}`;
  }
  let configFile = values.config;
  let configChosenBy: string | null = configFile === undefined ? null : '--config';
  if (configFile === undefined && existsSync('sidecar.toml')) {
    configFile = 'sidecar.toml';
    configChosenBy = './sidecar.toml in the working directory';
  }
  return {
    command,
    configFile,
    configChosenBy,
    overrides,
    flags,
    print: values.print === true,
    static: values.static === true,
  };
}

class UsageError extends Error {}

function loadWithProvenance(parsed: Parsed): LoadedConfig {
  return loadConfigWithProvenance({
    ...(parsed.configFile === undefined ? {} : { file: parsed.configFile }),
    env: process.env,
    overrides: parsed.overrides,
    flags: parsed.flags,
  });
}

export interface MainOptions {
  /**
   * May replace this process with node run again with server.semi_space_size's flag (only the
   * CLI's own process: never one that embeds main(), such as a test runner).
   */
  relaunch?: boolean;
}

function load(parsed: Parsed): SidecarConfig {
  return loadWithProvenance(parsed).config;
}

export async function main(argv: string[], options: MainOptions = {}): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parseCli(argv);
  } catch (err) {
    process.stderr.write(
      `askr-sidecar: ${toError(err).message}\nRun "askr-sidecar --help" for usage.\n`,
    );
    return 2;
  }
  if (parsed.command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (parsed.command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  let loaded: LoadedConfig;
  try {
    loaded = loadWithProvenance(parsed);
  } catch (err) {
    process.stderr.write(`askr-sidecar: invalid configuration: ${toError(err).message}\n`);
    return 2;
  }
  const config = loaded.config;
  if (parsed.command === 'check-config') return checkConfig(parsed, loaded);
  try {
    parseUpstreamRoutes(config.proxy.routes);
  } catch (err) {
    process.stderr.write(`askr-sidecar: invalid configuration: ${toError(err).message}\n`);
    return 2;
  }
  if (parsed.command === 'relay') return relay(config);
  // Before anything is started: a relaunch keeps nothing but the pid and stdio.
  const semiSpace = semiSpacePlanOf(config.server.semi_space_size, options.relaunch === true);
  const relaunchError = semiSpace.action === 'relaunch' ? relaunch(semiSpace) : null;
  return serve(parsed, config, semiSpace, relaunchError);
}

/**
 * check-config: the start's own validation (routes, trusted proxies, [grip] and [mercure] keys),
 * then this machine unless --static. Errors exit 2; warnings are printed and exit 0.
 */
async function checkConfig(parsed: Parsed, loaded: LoadedConfig): Promise<number> {
  const { config } = loaded;
  if (parsed.print) {
    process.stdout.write(
      renderEffectiveConfig(loaded, { fileChosenBy: parsed.configChosenBy }) + '\n',
    );
  }
  const findings: Finding[] = [...checkUnusedEnv(loaded)];
  try {
    await validateAsStartDoes(config, parsed.static);
  } catch (err) {
    findings.push({ level: 'error', key: '', message: toError(err).message });
  }
  if (!parsed.static) findings.push(...(await checkMachine(loaded)));
  for (const f of findings) {
    const label = f.level === 'error' ? 'invalid configuration' : 'warning';
    process.stderr.write(`askr-sidecar: ${label}: ${f.message}\n`);
  }
  if (findings.some((f) => f.level === 'error')) return 2;
  const warnings = findings.length;
  const suffix = warnings === 0 ? '' : ` with ${warnings} warning${warnings === 1 ? '' : 's'}`;
  process.stdout.write(`configuration OK${suffix} (${config.source})\n`);
  return 0;
}

/**
 * What startSidecar validates before it binds anything, so check-config cannot pass a config the
 * start refuses: the very optionsFrom() that start-up and every reload run. With --static the
 * machine is not the target: key files and server.temp_dir are left unread, the rest is checked.
 */
async function validateAsStartDoes(config: SidecarConfig, staticOnly: boolean): Promise<void> {
  if (!staticOnly) {
    const { optionsFrom } = await import('./reload/component-options.ts');
    await optionsFrom(config, { onPatternAborted: () => undefined });
    return;
  }
  parseUpstreamRoutes(config.proxy.routes);
  const { parseTrustedProxies } = await import('./http/trusted-proxies.ts');
  parseTrustedProxies(config.server.trusted_proxies);
  const { GripAuth } = await import('./broadcast/grip-auth.ts');
  new GripAuth(config.grip);
  const m = config.mercure;
  const keys = [m.jwt_key, m.publisher_jwt_key, m.subscriber_jwt_key];
  if (keys.some((k) => k.startsWith('file:'))) return;
  const { TokenVerifier } = await import('./mercure/token.ts');
  const { tokenSettingsOf } = await import('./mercure/mercure-route.ts');
  await TokenVerifier.create(tokenSettingsOf(config));
}

async function relay(config: SidecarConfig): Promise<number> {
  const output = createLogOutput(config.log);
  const logger = createLogger(config.log.level, output);
  let started: Relay;
  try {
    // Loaded on demand: a relay never loads the HTTP server, FastCGI or the hub (a smaller
    // process in worker pods).
    const { startRelay } = await import('./cluster/relay.ts');
    const { usableSocketPath } = await import('./broadcast/socket-path.ts');
    started = await startRelay(
      config,
      await usableSocketPath(config.broadcast.socket, logger),
      logger,
    );
  } catch (err) {
    const e = toError(err);
    logger.fatal({ err: e.message }, 'cannot start the relay');
    output.flushSync();
    process.stderr.write(`askr-sidecar relay: cannot start: ${e.message}\n`);
    return 1;
  }
  logger.flush(); // the start lines, not held for the batch interval
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) process.exit(1);
      stopping = true;
      logger.info({ signal, buffered: started.buffered() }, 'relay stopping');
      started.close().then(
        () => output.flush().then(() => resolve(0)),
        () => output.flush().then(() => resolve(1)),
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

/** Says what became of server.semi_space_size (after a relaunch that worked: 'given'). */
function logSemiSpace(logger: Logger, plan: SemiSpacePlan, relaunchError: Error | null): void {
  const fix = `start node with --max-semi-space-size=${plan.mib} (e.g. in NODE_OPTIONS)`;
  switch (plan.action) {
    case 'given':
      logger.info({ maxSemiSpaceMiB: plan.mib, setBy: plan.source }, 'V8 young generation capped');
      return;
    case 'within':
      logger.info(
        { maxSemiSpaceMiB: plan.v8Mib, cap: plan.mib },
        "V8's own young generation is within server.semi_space_size",
      );
      return;
    case 'unsupported':
      logger.warn(
        { v8SemiSpaceMiB: plan.v8Mib, cap: plan.mib },
        `server.semi_space_size not applied: node cannot be run again with it (${plan.why}); ${fix}`,
      );
      return;
    case 'relaunch':
      logger.warn(
        { v8SemiSpaceMiB: plan.v8Mib, cap: plan.mib, err: relaunchError?.message },
        `server.semi_space_size not applied: running node again failed; ${fix}`,
      );
      return;
    case 'off':
      return;
  }
}

async function serve(
  parsed: Parsed,
  config: SidecarConfig,
  semiSpace: SemiSpacePlan,
  relaunchError: Error | null,
): Promise<number> {
  const output = createLogOutput(config.log);
  const logger = createLogger(config.log.level, output);
  logSemiSpace(logger, semiSpace, relaunchError);
  let sidecar;
  try {
    const { startSidecar } = await import('./main.ts');
    sidecar = await startSidecar(config, logger, { logOutput: output });
  } catch (err) {
    const e = toError(err);
    logger.fatal(
      { code: isSidecarError(err) ? err.code : undefined, err: e.message },
      'cannot start',
    );
    output.flushSync();
    process.stderr.write(`askr-sidecar: cannot start: ${e.message}\n`);
    return 1;
  }
  const started = sidecar;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1); // pino writes what is buffered synchronously on 'exit'
      }
      stopping = true;
      logger.info({ signal, inFlight: started.http.inFlight() }, 'draining');
      // Every access line of the drained requests is written before the process ends.
      started.close().then(
        () => output.flush().then(() => resolve(0)),
        (err: unknown) => {
          logger.error({ err: toError(err) }, 'error during shutdown');
          void output.flush().then(() => resolve(1));
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    // The reload reads the file itself, logs its outcome (a bad file keeps the running config)
    // and never rejects.
    process.on('SIGHUP', () => void started.reload(() => load(parsed)));
  });
}

/** Runs the CLI and sets the exit code; a stray handle cannot keep a finished process alive. */
export async function run(argv: string[]): Promise<void> {
  const exitCode = await main(argv, { relaunch: true });
  process.exitCode = exitCode;
  setTimeout(() => process.exit(exitCode), 100).unref();
}
