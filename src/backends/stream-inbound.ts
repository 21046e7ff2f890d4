import type { Socket } from 'node:net';
import type { SteeredOutput } from '../port/steered-output.js';
import { STREAM_BROKEN, StreamDecoder } from './socket-link-framing.js';

/**
 * The inbound half of a stream socket link: chunks read from the peer go
 * through the StreamDecoder straight into the lab's channel. When the
 * channel is full the rest of the chunk (and every chunk after it) is held,
 * the socket is paused (TCP then slows the peer) and the loop is woken to
 * wait for room; pump() goes on with the held chunks and resumes the socket
 * once they are all in.
 */
export class StreamInbound {
  readonly decoder = new StreamDecoder(null);
  private out: SteeredOutput | null = null;
  // Chunks held while the lab's channel is full, and where the first one stopped.
  private readonly held: Buffer[] = [];
  private heldOff = 0;

  /** `wake` rings the loop that arms the channel's space (see arm()). */
  constructor(private readonly wake: () => void) {}

  setOutput(out: SteeredOutput): void {
    this.out = out;
    this.decoder.setOutput(out);
  }

  /** A chunk read from `s`; false when it broke the framing (`decoder.error` says how). */
  push(s: Socket, chunk: Buffer): boolean {
    if (this.held.length !== 0) {
      this.held.push(chunk);
      return true;
    }
    const off = this.decoder.push(chunk, 0);
    this.out?.publish();
    if (off === STREAM_BROKEN) return false;
    if (off < chunk.length) {
      this.held.push(chunk);
      this.heldOff = off;
      s.pause();
      this.wake();
    }
    return true;
  }

  /** Go on with held chunks once the channel has room: chunks finished, or STREAM_BROKEN. */
  pump(s: Socket): number {
    if (this.held.length === 0) return 0;
    let n = 0;
    while (this.held.length !== 0) {
      const chunk = this.held[0];
      const off = this.decoder.push(chunk, this.heldOff);
      this.out?.publish();
      if (off === STREAM_BROKEN) return STREAM_BROKEN;
      if (off < chunk.length) {
        this.heldOff = off;
        return n;
      }
      this.held.shift();
      this.heldOff = 0;
      n++;
    }
    s.resume();
    return n;
  }

  /** Arm the wait for room in the channel a held frame needs; true when there is room now. */
  arm(): boolean {
    const p = this.decoder.blockedOn;
    return this.held.length !== 0 && p !== null && p.armSpace(this.decoder.blockedLen);
  }

  /** The connection is over: forget its half-read frame and held chunks. */
  reset(): void {
    this.decoder.reset();
    this.held.length = 0;
    this.heldOff = 0;
  }
}
