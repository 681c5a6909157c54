import { describe, expect, it } from 'vitest';
import { planSemiSpace, v8SemiSpaceMiB, type SemiSpaceInput } from './young-generation.ts';

const MIB = 1024 * 1024;
/** heap_size_limit of Node 24 on a 24 GiB host: 4,096 MiB old generation + 3 x 64 MiB. */
const LARGE_HOST = 4288 * MIB;

function input(over: Partial<SemiSpaceInput> = {}): SemiSpaceInput {
  return {
    capBytes: 16 * MIB,
    heapSizeLimit: LARGE_HOST,
    execPath: '/usr/bin/node',
    execArgv: [],
    argv: ['/usr/bin/node', '/app/bin/askr-sidecar.js', 'serve', '--config', '/etc/askr.toml'],
    nodeOptions: undefined,
    cannotExec: null,
    ...over,
  };
}

describe('v8SemiSpaceMiB: V8 sizes semi-spaces from its heap limit', () => {
  it.each([
    // heap_size_limit MiB, --max-old-space-size, semi-space MiB (as measured on Node 24)
    [4288, null, 64],
    [1072, null, 16],
    [268, null, 4],
    [704, 512, 64], // --max-old-space-size=512 keeps the young generation's own sizing
    [524, 512, 4],
  ])('limit %d MiB, old space %s: %d MiB', (limit, old, semi) => {
    expect(v8SemiSpaceMiB(limit * MIB, old)).toBe(semi);
  });
});

describe('planSemiSpace', () => {
  it('runs node again with the cap before the script and its arguments, keeping node flags', () => {
    const plan = planSemiSpace(input({ execArgv: ['--enable-source-maps'] }));
    expect(plan).toEqual({
      action: 'relaunch',
      mib: 16,
      v8Mib: 64,
      args: [
        '/usr/bin/node',
        '--max-semi-space-size=16',
        '--enable-source-maps',
        '/app/bin/askr-sidecar.js',
        'serve',
        '--config',
        '/etc/askr.toml',
      ],
    });
  });

  it('after the relaunch, the cap is seen as ours and nothing is run again', () => {
    expect(planSemiSpace(input({ execArgv: ['--max-semi-space-size=16'] }))).toEqual({
      action: 'given',
      mib: 16,
      source: 'server.semi_space_size',
    });
  });

  it.each([
    [['--max-semi-space-size=4'], undefined, 4, 'node arguments'],
    [['--max_semi_space_size', '8'], undefined, 8, 'node arguments'],
    [[], '--max-old-space-size=512 --max-semi-space-size=32', 32, 'NODE_OPTIONS'],
    [['--max-semi-space-size=2'], '--max-semi-space-size=32', 2, 'node arguments'],
  ] as const)(
    'a cap given to node wins: %j, NODE_OPTIONS %j -> %d MiB from %s',
    (execArgv, nodeOptions, mib, source) => {
      expect(planSemiSpace(input({ execArgv, nodeOptions }))).toEqual({
        action: 'given',
        mib,
        source,
      });
    },
  );

  it('0 leaves V8 its own sizing', () => {
    expect(planSemiSpace(input({ capBytes: 0 }))).toEqual({ action: 'off', mib: 0 });
  });

  it('never raises the semi-space of a small host or container', () => {
    expect(planSemiSpace(input({ heapSizeLimit: 268 * MIB }))).toEqual({
      action: 'within',
      mib: 16,
      v8Mib: 4,
    });
    expect(planSemiSpace(input({ heapSizeLimit: 1072 * MIB }))).toMatchObject({
      action: 'within',
    });
  });

  it('with --max-old-space-size, compares with the young generation V8 keeps', () => {
    const plan = planSemiSpace(
      input({ heapSizeLimit: 704 * MIB, nodeOptions: '--max-old-space-size=512' }),
    );
    expect(plan).toMatchObject({ action: 'relaunch', v8Mib: 64 });
  });

  it('takes whole MiB', () => {
    expect(planSemiSpace(input({ capBytes: 16.5 * MIB }))).toMatchObject({ mib: 16 });
  });

  it('says why when node cannot be run again', () => {
    expect(planSemiSpace(input({ cannotExec: 'no execve here' }))).toEqual({
      action: 'unsupported',
      mib: 16,
      v8Mib: 64,
      why: 'no execve here',
    });
  });
});
