// Unit tests of the php-fpm stderr forwarder: levels, and PHP error copies kept at debug.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createFpmLogForwarder } from './fpm-log.ts';

function setup(): { line: (s: string) => void; records: { level: number; msg: string }[] } {
  const records: { level: number; msg: string }[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (s: string) => records.push(JSON.parse(s) as { level: number; msg: string }) },
  );
  const fwd = createFpmLogForwarder(logger);
  return { line: (s) => fwd.line(s), records };
}

describe('createFpmLogForwarder', () => {
  it('logs fpm warnings at warn and errors at error, without the timestamp', () => {
    const { line, records } = setup();
    line('[22-Nov-2026 13:08:03] WARNING: [pool askr] child 12 exited on signal 9 (SIGKILL)');
    line('[22-Nov-2026 13:08:03] ERROR: failed to post process the configuration');
    expect(records.map((r) => [r.level, r.msg])).toEqual([
      [40, '[pool askr] child 12 exited on signal 9 (SIGKILL)'],
      [50, 'failed to post process the configuration'],
    ]);
  });

  it('keeps PHP message copies (and their stack traces) at debug, other worker output at warn', () => {
    const { line, records } = setup();
    line('PHP message: PHP Fatal error:  Uncaught Error: boom in /app/x.php:5');
    line('Stack trace:');
    line('#0 {main}');
    line('  thrown in /app/x.php on line 5');
    line('NOTICE: PHP message: hello');
    line('{"message":"laravel stderr log"}');
    line('');
    expect(records.map((r) => r.level)).toEqual([20, 20, 20, 20, 20, 40]);
    expect(records[5]?.msg).toBe('{"message":"laravel stderr log"}');
  });
});
