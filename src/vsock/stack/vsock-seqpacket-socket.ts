import { InvalidArgumentError } from '../../errors.js';
import { VSOCK_SEQ_EOM, VSOCK_SEQ_EOR } from '../../spec/vsock.js';
import { ConnState } from './connection-states.js';
import type { Connection } from './connection.js';
import type { VsockPayloadParts } from './packet-port.js';
import { VsockError } from './vsock-error.js';
import { VsockConnection, copyOut } from './vsock-socket.js';

/** A message with options, as write() also takes it: `sock.write({ data, eor: true })`. */
export interface SeqpacketMessage {
  data: Uint8Array;
  /** Set EOR (end of record, VIRTIO_VSOCK_SEQ_EOR) on the message's last packet. */
  eor?: boolean;
}

/**
 * A vsock seqpacket socket (SOCK_SEQPACKET, VIRTIO_VSOCK_F_SEQPACKET): an
 * object-mode Duplex where each write(Uint8Array) is one message and each
 * 'data' is one whole message as a Buffer, boundaries kept.
 *
 * Sending: a message goes out in packets of at most port.maxPayload bytes
 * (as peer credit allows), VIRTIO_VSOCK_SEQ_EOM on its last packet, and
 * VIRTIO_VSOCK_SEQ_EOR too when sendMessage(msg, { eor: true }) (or
 * write({ data, eor: true })) asked. A message larger than the peer's
 * buf_alloc could never be received whole: sendMessage() throws EMSGSIZE
 * (the socket stays usable); a plain write() of one fails the stream with
 * EMSGSIZE, as a failed write does in Node.
 *
 * Receiving: packets are reassembled until EOM (two messages are never
 * merged); `lastMessageEor` tells, while a 'data' handler runs (or after
 * read() returned a message), whether that message carried EOR; 'message'
 * (buf, { eor }) is emitted right after each 'data' with the same buffer.
 * Credit covers seqpacket as stream: fwd_cnt advances by a whole message
 * when the Readable takes it.
 */
export class VsockSeqpacketSocket extends VsockConnection {
  /** Whether the message most recently emitted as 'data' (or returned by read()) had EOR set. */
  lastMessageEor = false;

  /** Packets of the message being reassembled. */
  private readonly parts: Buffer[] = [];
  private partBytes = 0;
  /** Received messages that had EOR (identity, so the Readable's queue needs no side table). */
  private readonly eorMessages = new WeakSet<Buffer>();

  /** @internal Made by VsockStack.connect() or a listener. */
  constructor(connection: Connection) {
    super(connection, { objectMode: true });
  }

  /**
   * Send one message; `eor` sets EOR on its last packet. Returns write()'s
   * backpressure answer. Throws EMSGSIZE (nothing sent) when the message is
   * larger than the peer's buf_alloc.
   */
  sendMessage(msg: Uint8Array, options?: { eor?: boolean }): boolean {
    if (!(msg instanceof Uint8Array)) throw new InvalidArgumentError('sendMessage: the message must be a Uint8Array');
    this.checkSize(msg.length, true);
    return options?.eor === true ? this.write({ data: msg, eor: true } satisfies SeqpacketMessage) : this.write(msg);
  }

  override emit(event: string | symbol, ...args: any[]): boolean {
    if (event === 'data') {
      const buf = args[0] as Buffer;
      const eor = this.eorMessages.has(buf);
      this.lastMessageEor = eor;
      const r = super.emit('data', buf);
      if (this.listenerCount('message') > 0) super.emit('message', buf, { eor });
      return r;
    }
    return super.emit(event, ...args);
  }

  override _write(chunk: Uint8Array | SeqpacketMessage, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    let data: Uint8Array;
    let flags = VSOCK_SEQ_EOM;
    if (chunk instanceof Uint8Array) {
      data = chunk;
    } else if (chunk !== null && typeof chunk === 'object' && chunk.data instanceof Uint8Array) {
      data = chunk.data;
      if (chunk.eor === true) flags |= VSOCK_SEQ_EOR;
    } else {
      cb(new InvalidArgumentError('a seqpacket message is a Uint8Array or { data: Uint8Array, eor?: boolean }'));
      return;
    }
    const err = this.checkSize(data.length, false);
    if (err !== null) {
      cb(err);
      return;
    }
    this.connection.startTx(data, flags, cb);
  }

  /** EMSGSIZE when the peer's buf_alloc is known and smaller than the message. */
  private checkSize(len: number, doThrow: boolean): VsockError | null {
    if (this.connState !== ConnState.ESTABLISHED || len <= this.credit.peerBufAlloc) return null;
    const err = new VsockError('EMSGSIZE', `${this.describe()}: message of ${len} bytes is larger than the peer's buffer (${this.credit.peerBufAlloc})`);
    if (doThrow) throw err;
    return err;
  }

  /** @internal A message queued while connecting may be larger than the peer's buf_alloc, now known. */
  override onEstablished(): void {
    const c = this.connection;
    if (c.txBuf !== null && c.txEnd > c.credit.peerBufAlloc) {
      const err = this.checkSize(c.txEnd, false);
      if (err !== null) c.failTx(err);
    }
  }

  /** @internal */
  rxData(payload: Uint8Array | VsockPayloadParts, off: number, len: number, flags: number): void {
    const part = copyOut(payload, off, len);
    if ((flags & VSOCK_SEQ_EOM) === 0) {
      this.parts.push(part);
      this.partBytes += len;
      return;
    }
    let msg = part;
    if (this.parts.length > 0) {
      this.parts.push(part);
      msg = Buffer.concat(this.parts, this.partBytes + len);
      this.parts.length = 0;
      this.partBytes = 0;
    }
    if ((flags & VSOCK_SEQ_EOR) !== 0) this.eorMessages.add(msg);
    this.rxEnqueue(msg);
  }

  protected override discardPartial(): void {
    if (this.partBytes === 0 && this.parts.length === 0) return;
    // Never completed: free its credit so the accounting stays exact.
    this.credit.onConsumed(this.partBytes);
    this.parts.length = 0;
    this.partBytes = 0;
  }
}
