import { clearRecordNetHdr } from '../net/net-port.js';
import { NET_MAX_TX_FRAME } from '../spec/net.js';
import type { PortChannelProducer } from '../port/port-channel.js';
import type { SteeredOutput } from '../port/steered-output.js';

/** QEMU's stream framing: a 4-byte big-endian length before each frame. */
export const STREAM_LEN_BYTES = 4;
/**
 * The largest length prefix accepted: a 64 KiB GSO frame with its headers,
 * the largest frame a NIC here sends. A larger prefix means the stream is
 * not QEMU framing (or is out of step): the connection is closed.
 */
export const STREAM_MAX_FRAME = NET_MAX_TX_FRAME;
const ETH_HLEN = 14;
/** A frame's first bytes, enough for its flow hash (Ethernet, two VLAN tags, IPv6, ports). */
const FLOW_BYTES = 14 + 8 + 40 + 4;
/** Pieces shorter than this are copied by a loop: set() would need a view (an allocation) per piece. */
const LOOP_COPY = 64;

const HEADER = 0;
const STAGE = 1;
const RESERVE = 2;
const BODY = 3;
const SKIP = 4;

/** What push() returns when the stream broke the framing (see `error`). */
export const STREAM_BROKEN = -1;

/**
 * Reads QEMU `-netdev stream` framing from a byte stream cut anywhere (a
 * frame split across reads, several frames in one read) and writes each frame
 * straight into a port channel as the bytes arrive: no reassembly buffer. The
 * first bytes of a frame are staged until its flow hash can pick the
 * receiving queue; then the record is reserved and filled. When the channel
 * is full the decoder stops where it is and says so; the caller pauses the
 * socket and pushes the rest once the channel has room (back-pressure reaches
 * the peer through TCP). Each frame gets a zero virtio_net_hdr: wire frames
 * need no offload.
 */
export class StreamDecoder {
  frames = 0;
  bytes = 0;
  /** Frames shorter than an Ethernet header (read and dropped). */
  dropsBad = 0;
  /** Frames longer than the channel carries (read and dropped). */
  dropsTooBig = 0;
  /** Frames read while nothing is attached (dropped). */
  dropsNotAttached = 0;
  /** Why the stream broke, after push() returned STREAM_BROKEN. */
  error: string | undefined;
  /** The channel push() stopped on, and the length it needs. */
  blockedOn: PortChannelProducer | null = null;
  blockedLen = 0;
  private state = HEADER;
  private lenValue = 0;
  private lenHave = 0;
  private frameLen = 0;
  private readonly stage = new Uint8Array(FLOW_BYTES);
  private staged = 0;
  private producer: PortChannelProducer | null = null;
  private writeAt = 0;
  private remaining = 0;

  constructor(private out: SteeredOutput | null) {}

  /** Where frames go from now on (null: dropped). */
  setOutput(out: SteeredOutput | null): void {
    this.out = out;
  }

  /** Forget a frame in progress (the connection ended); an open reservation is abandoned, never committed. */
  reset(): void {
    this.state = HEADER;
    this.lenValue = 0;
    this.lenHave = 0;
    this.staged = 0;
    this.producer = null;
    this.blockedOn = null;
    this.error = undefined;
  }

  /**
   * Take bytes chunk[from, chunk.length). Returns chunk.length when all were
   * taken, the offset it stopped at when a channel was full (`blockedOn`;
   * call again from there), or STREAM_BROKEN. Publishes nothing: the caller
   * publishes once per chunk.
   */
  push(chunk: Uint8Array, from: number): number {
    const n = chunk.length;
    let i = from;
    this.out?.refresh();
    for (;;) {
      if (this.state === RESERVE && !this.reserve()) return i;
      if (i >= n) return n;
      switch (this.state) {
        case HEADER: {
          while (this.lenHave < STREAM_LEN_BYTES && i < n) {
            this.lenValue = ((this.lenValue << 8) | chunk[i++]) >>> 0;
            this.lenHave++;
          }
          if (this.lenHave < STREAM_LEN_BYTES) return n;
          const len = this.lenValue;
          this.lenValue = 0;
          this.lenHave = 0;
          if (len > STREAM_MAX_FRAME) {
            this.error = `stream length prefix ${len} is larger than ${STREAM_MAX_FRAME}`;
            return STREAM_BROKEN;
          }
          this.frameLen = len;
          if (len === 0) {
            this.dropsBad++;
          } else if (len < ETH_HLEN || this.out === null || len > this.out.producers[0].maxFrame) {
            if (len < ETH_HLEN) this.dropsBad++;
            else if (this.out === null) this.dropsNotAttached++;
            else this.dropsTooBig++;
            this.remaining = len;
            this.state = SKIP;
          } else {
            this.staged = 0;
            this.state = STAGE;
          }
          break;
        }
        case STAGE: {
          const want = Math.min(FLOW_BYTES, this.frameLen);
          while (this.staged < want && i < n) this.stage[this.staged++] = chunk[i++];
          if (this.staged === want) this.state = RESERVE;
          break;
        }
        case BODY: {
          const k = Math.min(this.remaining, n - i);
          const u8 = this.producer!.u8;
          if (k < LOOP_COPY) for (let j = 0; j < k; j++) u8[this.writeAt + j] = chunk[i + j];
          else u8.set(i === 0 && k === n ? chunk : chunk.subarray(i, i + k), this.writeAt);
          i += k;
          this.writeAt += k;
          this.remaining -= k;
          if (this.remaining === 0) this.finish();
          break;
        }
        default: {
          // SKIP
          const k = Math.min(this.remaining, n - i);
          i += k;
          this.remaining -= k;
          if (this.remaining === 0) this.state = HEADER;
        }
      }
    }
  }

  /** Reserve the record for the staged frame; false when its channel is full. */
  private reserve(): boolean {
    const out = this.out;
    if (out === null) {
      // Detached while staged: drop the rest of the frame.
      this.dropsNotAttached++;
      this.remaining = this.frameLen - this.staged;
      this.state = this.remaining === 0 ? HEADER : SKIP;
      return true;
    }
    const p = out.pick(this.stage, 0, this.staged);
    const at = p.reserve(this.frameLen);
    if (at < 0) {
      this.blockedOn = p;
      this.blockedLen = this.frameLen;
      return false;
    }
    this.blockedOn = null;
    this.producer = p;
    clearRecordNetHdr(p.u32, at);
    for (let j = 0; j < this.staged; j++) p.u8[at + j] = this.stage[j];
    this.writeAt = at + this.staged;
    this.remaining = this.frameLen - this.staged;
    this.state = BODY;
    if (this.remaining === 0) this.finish();
    return true;
  }

  private finish(): void {
    this.producer!.commit();
    this.frames++;
    this.bytes += this.frameLen;
    this.producer = null;
    this.state = HEADER;
  }
}
