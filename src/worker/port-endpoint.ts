import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import type { Endpoint } from 'comlink';

type Listener = Parameters<Endpoint['addEventListener']>[1];

/**
 * A comlink endpoint over a worker_threads MessagePort. `drain()` delivers the
 * queued messages synchronously (receiveMessageOnPort, as piscina does), so a
 * queue worker whose hot loop never returns to the event loop can still serve
 * control calls: the loop sees the control word, drains, and returns once so
 * comlink's replies (posted from microtasks) go out.
 */
export class PortEndpoint implements Endpoint {
  private readonly listeners = new Set<Listener>();

  constructor(private readonly port: MessagePort) {
    port.on('message', (data: unknown) => this.dispatch(data));
  }

  postMessage(message: unknown, transfer?: Parameters<Endpoint['postMessage']>[1]): void {
    this.port.postMessage(message, transfer as never);
  }

  addEventListener(_type: string, listener: Listener): void {
    this.listeners.add(listener);
  }

  removeEventListener(_type: string, listener: Listener): void {
    this.listeners.delete(listener);
  }

  /** Deliver every message already queued on the port; returns how many. */
  drain(): number {
    let n = 0;
    for (let m = receiveMessageOnPort(this.port); m !== undefined; m = receiveMessageOnPort(this.port)) {
      this.dispatch(m.message);
      n++;
    }
    return n;
  }

  /** Let the port keep the event loop alive (the default once listened to). */
  ref(): void {
    this.port.ref();
  }

  /** Let the event loop end while the port is idle. */
  unref(): void {
    this.port.unref();
  }

  close(): void {
    this.listeners.clear();
    this.port.close();
  }

  private dispatch(data: unknown): void {
    const event = { data } as MessageEvent;
    for (const l of this.listeners) {
      if (typeof l === 'function') l(event);
      else l.handleEvent(event);
    }
  }
}
