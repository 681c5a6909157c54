/**
 * Runs a managed php-fpm in a separate Node process, for tests of what happens when the sidecar
 * process goes away: prints `{"pid":<master pid>}` once ready, then `exit` mode calls process.exit
 * (the exit hook must kill php-fpm) and `hang` mode waits to be SIGKILLed (php-fpm is orphaned).
 * Usage: node test/helpers/fpm-child.ts <runDir> <exit|hang>
 */
import { pino } from 'pino';
import { startTestFpm } from './fpm.ts';

const [runDir, mode] = process.argv.slice(2);
if (runDir === undefined || (mode !== 'exit' && mode !== 'hang')) {
  throw new Error('usage: fpm-child.ts <runDir> <exit|hang>');
}
const fpm = await startTestFpm(runDir, {
  logger: pino({ level: 'warn' }, pino.destination(2)),
});
process.stdout.write(JSON.stringify({ pid: fpm.pid() }) + '\n', () => {
  if (mode === 'exit') process.exit(0);
  else setInterval(() => undefined, 60_000);
});
