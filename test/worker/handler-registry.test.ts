/**
 * The queue threads' handler registry: typed by a map of kind -> params at
 * the edge (workers/queue-handlers.ts), looked up by the string kind the
 * control plane sends.
 */
import { expect, it } from 'vitest';
import { VirtioLabError } from '../../src/errors.js';
import type { NetRxParams } from '../../src/net/net-rx-queue.js';
import { type HandlerRegistry, type QueueHandler, handlerLookup } from '../../src/worker/queue-handler.js';
import { queueHandler } from '../../workers/queue-handlers.js';

const idle: QueueHandler = { poll: () => 0, arm: () => false, disarm: () => {}, quiesce: () => {} };

it('the edge registry has a handler for every kind the net and vsock devices name', () => {
  for (const kind of ['net-rx', 'net-tx', 'vsock-rx', 'vsock-tx']) expect(queueHandler(kind)).toBeTypeOf('function');
});

it('an unregistered kind is an UNKNOWN_QUEUE_KIND error naming it, also for names Object.prototype has', () => {
  for (const kind of ['net-rxx', 'toString', '__proto__', '']) {
    let caught: unknown;
    try {
      queueHandler(kind);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(VirtioLabError);
    expect((caught as VirtioLabError).code).toBe('UNKNOWN_QUEUE_KIND');
    expect((caught as VirtioLabError).message).toContain(`"${kind}"`);
  }
});

it('a registry is typed by its kinds: a factory sees its own params, and a missing kind does not compile', () => {
  type Kinds = { counter: { start: number }; rx: NetRxParams };
  const seen: number[] = [];
  const registry: HandlerRegistry<Kinds> = {
    counter: (ctx) => {
      seen.push(ctx.params.start + 1);
      return idle;
    },
    rx: () => idle,
  };
  // @ts-expect-error: 'rx' has no factory
  const incomplete: HandlerRegistry<Kinds> = { counter: () => idle };
  expect(Object.keys(incomplete)).toEqual(['counter']);
  const lookup = handlerLookup(registry);
  lookup('counter')({ params: { start: 41 } } as never);
  expect(seen).toEqual([42]);
});
