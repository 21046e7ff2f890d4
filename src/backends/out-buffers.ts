import { type WordRef, ring } from '../notify/notify-area.js';

/** Bytes of each outbound buffer: a batch of frames (one stream write, or datagrams packed one after the other). */
const OUT_BUFFER_BYTES = 256 * 1024;
/** Outbound buffers; all in flight means the socket is slower than the lab: the channel fills and its sender waits. */
const OUT_BUFFERS = 4;

/**
 * The outbound buffers of a lab port served on the event loop (a socket
 * link, a VXLAN uplink): frames are packed into the current buffer, and a
 * buffer stays busy from each write() / send() of its bytes to that call's
 * callback. When a batch found every buffer in flight (`blocked`), the
 * callback that frees one rings the loop's wake word.
 */
export class OutBuffers {
  readonly bufs: Buffer[] = [];
  /** Per buffer: the callback to hand to write() / send() of its bytes (made once, never per frame). */
  readonly done: ((e?: Error | null) => void)[] = [];
  /** The buffer being filled (-1: none) and the bytes used in it. */
  cur = -1;
  used = 0;
  /** The last batch stopped because every buffer was in flight. */
  blocked = false;
  private readonly busy: number[] = [];
  private readonly i32: Int32Array;

  constructor(
    private readonly wake: WordRef,
    /** Counts a write or send that failed. */
    onError: () => void,
  ) {
    this.i32 = new Int32Array(wake.buffer);
    for (let k = 0; k < OUT_BUFFERS; k++) {
      this.bufs.push(Buffer.allocUnsafe(OUT_BUFFER_BYTES));
      this.busy.push(0);
      this.done.push((e) => {
        if (e) onError();
        if (--this.busy[k] === 0 && this.blocked) ring(this.i32, this.wake.index);
      });
    }
  }

  /** Whether the current buffer has `need` bytes free. */
  fits(need: number): boolean {
    return this.cur >= 0 && this.used + need <= OUT_BUFFER_BYTES;
  }

  /** Make a buffer that nothing is in flight from current (empty); false when all are in flight. */
  takeFree(): boolean {
    for (let k = 0; k < OUT_BUFFERS; k++) {
      if (this.busy[k] === 0 && k !== this.cur) {
        this.cur = k;
        this.used = 0;
        return true;
      }
    }
    return false;
  }

  /** Buffer k is handed to one more write() / send(), which calls done[k]. */
  hold(k: number): void {
    this.busy[k]++;
  }
}
