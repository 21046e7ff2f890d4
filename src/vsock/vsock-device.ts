import { type PortChannelSpec, resetPortChannel } from '../port/port-channel.js';
import { allocVsockChannel } from './vsock-channel.js';
import { InvalidArgumentError } from '../errors.js';
import { SharedArena } from '../memory/arena.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { type WordRef, ring } from '../notify/notify-area.js';
import {
  F_EVENT_IDX,
  F_INDIRECT_DESC,
  F_IN_ORDER,
  F_RING_PACKED,
  F_RING_RESET,
  F_VERSION_1,
  type FeatureSet,
  VSOCK_F_MRG_RXBUF,
  VSOCK_F_NO_IMPLIED_STREAM,
  VSOCK_F_SEQPACKET,
  VSOCK_F_STREAM,
  featureSet,
  hasFeature,
} from '../spec/features.js';
import { DEVICE_ID_VSOCK } from '../spec/status.js';
import {
  VSOCK_CFG_GUEST_CID,
  VSOCK_CFG_SIZE,
  VSOCK_EVENT_QUEUE,
  VSOCK_EVENT_TRANSPORT_RESET,
  VSOCK_HDR_SIZE,
  VSOCK_MAX_PKT_PAYLOAD,
  VSOCK_MRG_HDR_SIZE,
  VSOCK_RX_QUEUE,
  VSOCK_TX_QUEUE,
} from '../spec/vsock.js';
import { ConfigSpace } from '../transport/config-space.js';
import type { DeviceModel, QueueWorkerSpec } from '../transport/device-model.js';
import { VirtioDevice, type VirtioDeviceOptions } from '../transport/virtio-device.js';
import { VsockEventQueue, type VsockEventSource } from './vsock-event-queue.js';
import { VSOCK_RX_SCRATCH_BYTES, type VsockRxParams } from './vsock-rx-queue.js';
import type { VsockTxParams } from './vsock-tx-queue.js';
import { VSOCK_QUEUE_COUNTERS, type VsockDropReason, type VsockQueueStats } from './vsock-counters.js';

/** Everything this virtio-vsock device offers by default; a driver accepts what it wants of it. */
export const VSOCK_DEVICE_FEATURES: FeatureSet = featureSet(F_VERSION_1, F_EVENT_IDX, F_INDIRECT_DESC, F_RING_RESET, F_RING_PACKED, F_IN_ORDER, VSOCK_F_STREAM, VSOCK_F_SEQPACKET, VSOCK_F_MRG_RXBUF);

/** Default bytes of each channel's data area (a power of two; at least twice a 64 KiB packet's record). */
export const VSOCK_DEFAULT_CHANNEL_BYTES = 1 << 20;

/** Options of a virtio-vsock device. */
export interface VsockDeviceOptions extends VirtioDeviceOptions {
  /** The guest's context id (guest_cid in config, 5.10.4): an integer in [3, 0xffffffff). */
  guestCid: number;
  /**
   * Largest queue size the device accepts (what queue_size reads before the
   * driver writes it, 4.1.4.3): default 256; a power of two up to
   * MAX_QUEUE_SIZE (32768), else QueueStateError. A driver that asks for
   * more gets this size.
   */
  queueSize?: number;
  /** Features offered; default VSOCK_DEVICE_FEATURES. */
  features?: FeatureSet;
  /** Bytes of each channel's data area (toHost, toGuest): a power of two; default VSOCK_DEFAULT_CHANNEL_BYTES. */
  channelBytes?: number;
  /**
   * Arena to carve the channels and the host words from; default an arena of
   * their own. Never guest memory: pass the arena that holds the guest memory
   * (outside its regions) so every copy between guest buffers and channels is
   * a copyWithin within one buffer, with no allocation per packet.
   */
  arena?: SharedArena;
}

/**
 * What the host side (a VsockStack on any thread) needs to talk to the
 * device: plain data, so it can be posted to a worker.
 */
export interface VsockHostPortSpec {
  /**
   * Packets from the guest, the host consumes. Each record's frame is the
   * 44-byte virtio_vsock_hdr and hdr.len payload bytes; its 12 spare bytes
   * are zero. wakeConsumer is hostWake; wakeProducer is the tx queue's
   * doorbell (a release that frees room wakes the tx worker).
   */
  toHost: PortChannelSpec;
  /**
   * Packets to the guest, the host produces: frame = 44-byte header + hdr.len
   * payload bytes (at most VSOCK_MAX_PKT_PAYLOAD). The 12 spare bytes
   * (recordNetHdr) must be zeroed before commit(): the rx queue keeps a split
   * packet's progress there. wakeConsumer is the rx queue's doorbell;
   * wakeProducer is hostWake.
   */
  toGuest: PortChannelSpec;
  /** The one word the host thread sleeps on: rung by toHost's producer (data) and toGuest's consumer (room). */
  hostWake: WordRef;
  /** Shared Int32 word holding the guest's current CID (as u32). */
  guestCid: WordRef;
  /** Negotiated features as hex at the time hostPort was read (0 before FEATURES_OK). */
  features: string;
}

/** What the 'transportReset' event carries. */
export interface VsockTransportResetEvent {
  /**
   * 'event': transportReset() posted VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (the
   * driver drops every connection, 5.10.6.6); the channels are left as they
   * are. 'device-reset': the driver reset the device (status 0): both channels
   * were emptied and their indices set back to 0, so the host must build its
   * channel ends anew from hostPort before it uses them again.
   */
  cause: 'event' | 'device-reset';
  /** The guest's CID from now on. */
  guestCid: number;
}

/** What VirtioVsockDevice.vsockStats() reports. */
export interface VsockDeviceStats {
  /** Receive queue counters: chains = packets placed (each part of a split packet counts), bytes = payload bytes, segments = parts of split packets. */
  rx: VsockQueueStats;
  /** Transmit queue counters: chains = chains completed (drops included), bytes = payload bytes forwarded, drops by reason in vsockDropsByReason. */
  tx: VsockQueueStats;
  /** Event queue counters: chains = events delivered. */
  event: VsockQueueStats;
  /** Packets written into the driver's receive buffers (a split packet counts each part). */
  rxPackets: number;
  /** Payload bytes delivered to the guest. */
  rxBytes: number;
  /** Parts sent for packets that had to be split over several receive buffers. */
  rxSplitParts: number;
  /** Packets forwarded from the guest to the host side. */
  txPackets: number;
  /** Payload bytes forwarded to the host side. */
  txBytes: number;
  /** Packets dropped on either data queue (transmit: by reason below; receive: malformed records, unplaceable packets). */
  drops: number;
  /** Transmit drops by reason (only reasons seen). */
  txDropsByReason: Partial<Record<VsockDropReason, number>>;
  /** Broken chains (VirtqueueError) on any queue. */
  errors: number;
  /** Events delivered on the event queue (counters are cumulative since the device was made). */
  eventsDelivered: number;
  /** True while an event waits for the driver to post an event buffer. */
  eventPending: boolean;
}

/** Throws unless `cid` can be a guest's CID (5.10.4: 0, 1, 2 and 0xffffffff are reserved). */
function checkCid(cid: number): void {
  if (!Number.isInteger(cid) || cid < 3 || cid >= 0xffffffff) throw new InvalidArgumentError(`guest CID ${cid} must be an integer in [3, 0xfffffffe]`);
}

/** The channels, words and scratch areas a device lays out once. */
interface VsockPlumbing {
  toHost: PortChannelSpec;
  toGuest: PortChannelSpec;
  hostWake: WordRef;
  cidWord: WordRef;
  cidI32: Int32Array;
  /** u8 index of the rx queue's scratch area (in toGuest.buffer). */
  rxScratch: number;
}

/** The queue-thread handler kinds of virtio-vsock's rx and tx queues, with their parameters. */
export type VsockQueueKinds = { 'vsock-rx': VsockRxParams; 'vsock-tx': VsockTxParams };

class VsockModel implements DeviceModel<VsockQueueKinds, typeof VSOCK_QUEUE_COUNTERS>, VsockEventSource {
  readonly deviceId = DEVICE_ID_VSOCK;
  readonly counters = VSOCK_QUEUE_COUNTERS;
  /** rx, tx, event (5.10.2). */
  readonly numQueues = 3;
  readonly config = new ConfigSpace(VSOCK_CFG_SIZE);
  /**
   * A link's first connections ran at a fraction of a warm link's rate while
   * a new queue thread booted and its code warmed up; a thread kept from the
   * last closed vsock device brings its compiled code along.
   */
  readonly keepsQueueThreads = true;
  plumbing!: VsockPlumbing;
  /** Event id waiting for a buffer, or -1. */
  pending = -1;

  constructor(
    readonly features: FeatureSet,
    readonly maxQueueSize: number,
    private readonly onDeviceReset: () => void,
  ) {}

  checkFeatures(accepted: FeatureSet): string | undefined {
    // 5.10.3.1: with NO_IMPLIED_STREAM the driver must negotiate at least one socket type.
    if (hasFeature(accepted, VSOCK_F_NO_IMPLIED_STREAM) && !hasFeature(accepted, VSOCK_F_STREAM) && !hasFeature(accepted, VSOCK_F_SEQPACKET)) {
      return `feature ${VSOCK_F_NO_IMPLIED_STREAM} (VIRTIO_VSOCK_F_NO_IMPLIED_STREAM) needs one of ${VSOCK_F_STREAM} (STREAM), ${VSOCK_F_SEQPACKET} (SEQPACKET) (5.10.3.1)`;
    }
    return undefined;
  }

  runsInline(q: number): boolean {
    return q === VSOCK_EVENT_QUEUE;
  }

  queueWorker(q: number, negotiated: FeatureSet): QueueWorkerSpec<VsockQueueKinds> | undefined {
    const p = this.plumbing;
    switch (q) {
      case VSOCK_RX_QUEUE: {
        const mergeable = hasFeature(negotiated, VSOCK_F_MRG_RXBUF);
        const params: VsockRxParams = { input: p.toGuest, mode: mergeable ? 'mergeable' : 'small', hdrSize: mergeable ? VSOCK_MRG_HDR_SIZE : VSOCK_HDR_SIZE, scratch: p.rxScratch };
        return { kind: 'vsock-rx', params };
      }
      case VSOCK_TX_QUEUE: {
        const params: VsockTxParams = { output: p.toHost, guestCid: p.cidWord };
        return { kind: 'vsock-tx', params };
      }
      case VSOCK_EVENT_QUEUE:
        return { inline: (ctx) => new VsockEventQueue(ctx, this) };
      default:
        return undefined;
    }
  }

  pendingEvent(): number {
    return this.pending;
  }

  eventDelivered(): void {
    this.pending = -1;
  }

  /** Called once every queue worker has ended (VirtioDevice.reset): nothing touches the channels now. */
  onReset(): void {
    this.pending = -1;
    resetPortChannel(this.plumbing.toHost);
    resetPortChannel(this.plumbing.toGuest);
    this.onDeviceReset();
  }
}

/**
 * A virtio-vsock device (section 5.10): queues rx 0, tx 1 and event 2; config
 * le64 guest_cid. The rx and tx queues run on worker threads ('vsock-rx',
 * 'vsock-tx') and meet the host side through two shared-memory channels,
 * toHost and toGuest (see hostPort); the event queue is served on this
 * thread. Protocol (connections, credit, RST) is the host side's: the device
 * moves packets, checks their structure and addressing, and splits packets
 * over receive buffers.
 *
 * Events: 'transportReset' (VsockTransportResetEvent) when transportReset()
 * is called and when the device is reset; besides VirtioDevice's
 * 'queue-error' and 'config-interrupt'.
 */
export class VirtioVsockDevice extends VirtioDevice<typeof VSOCK_QUEUE_COUNTERS> {
  private readonly vsock: VsockModel;

  /**
   * @throws InvalidArgumentError for a guest CID outside [3, 0xffffffff), a bad
   * queue size, or a channel size that is not a power of two holding two
   * 64 KiB packets.
   */
  constructor(memory: GuestMemory, options: VsockDeviceOptions) {
    checkCid(options.guestCid);
    const channelBytes = options.channelBytes ?? VSOCK_DEFAULT_CHANNEL_BYTES;
    let self: VirtioVsockDevice | undefined;
    const model = new VsockModel(options.features ?? VSOCK_DEVICE_FEATURES, options.queueSize ?? 256, () => {
      if (self !== undefined) self.emit('transportReset', { cause: 'device-reset', guestCid: self.guestCid } satisfies VsockTransportResetEvent);
    });
    super(model, memory, options);
    this.vsock = model;
    const arena = options.arena ?? new SharedArena(2 * (channelBytes + 4096) + 4096);
    const words = arena.alloc(64 * 2, 64) >>> 2;
    const hostWake: WordRef = { buffer: arena.buffer, index: words };
    const cidWord: WordRef = { buffer: arena.buffer, index: words + 16 };
    const toHost = allocVsockChannel(arena, channelBytes, hostWake, this.doorbell(VSOCK_TX_QUEUE));
    const toGuest = allocVsockChannel(arena, channelBytes, this.doorbell(VSOCK_RX_QUEUE), hostWake);
    const rxScratch = arena.alloc(VSOCK_RX_SCRATCH_BYTES, 64);
    model.plumbing = { toHost, toGuest, hostWake, cidWord, cidI32: new Int32Array(arena.buffer), rxScratch };
    model.config.update((b) => writeCid(b, options.guestCid));
    Atomics.store(model.plumbing.cidI32, cidWord.index, options.guestCid | 0);
    self = this;
  }

  /** The guest's CID (config guest_cid). */
  get guestCid(): number {
    return this.readConfig(VSOCK_CFG_GUEST_CID, 4) + this.readConfig(VSOCK_CFG_GUEST_CID + 4, 4) * 0x1_0000_0000;
  }

  /** True when the driver negotiated VIRTIO_VSOCK_F_SEQPACKET. */
  get seqpacket(): boolean {
    return hasFeature(this.negotiatedFeatures, VSOCK_F_SEQPACKET);
  }

  /**
   * The host side's ends: both channels, the word the host sleeps on, the CID
   * word and the negotiated features (read it after DRIVER_OK for those).
   * Plain data: post it to the thread that runs the host stack.
   */
  get hostPort(): VsockHostPortSpec {
    const p = this.vsock.plumbing;
    return { toHost: p.toHost, toGuest: p.toGuest, hostWake: p.hostWake, guestCid: p.cidWord, features: this.negotiatedFeatures.toString(16) };
  }

  /**
   * 5.10.6.6: tell the driver to drop every connection, e.g. after a
   * migration. With `newCid` the config guest_cid changes first (generation
   * bumped, config interrupt once DRIVER_OK is set) and the tx queue checks
   * src_cid against it from its next batch. Then
   * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET goes to the event queue (pending until
   * the driver posts an event buffer; several resets before then make one
   * event) and 'transportReset' is emitted (cause 'event') so the host side
   * resets its connections.
   * @throws InvalidArgumentError for a CID outside [3, 0xffffffff).
   */
  transportReset(newCid?: number): void {
    if (newCid !== undefined) {
      checkCid(newCid);
      const p = this.vsock.plumbing;
      this.updateConfig((b) => writeCid(b, newCid));
      Atomics.store(p.cidI32, p.cidWord.index, newCid | 0);
    }
    this.vsock.pending = VSOCK_EVENT_TRANSPORT_RESET;
    // Wake the event queue's runner (it sleeps on its doorbell).
    ring(this.notify.i32, this.notify.doorbellWord(VSOCK_EVENT_QUEUE));
    this.emit('transportReset', { cause: 'event', guestCid: this.guestCid } satisfies VsockTransportResetEvent);
  }

  /**
   * Device-side figures: each queue's counters (packets, bytes, drops by
   * reason, errors by code), their totals, and the event queue's state.
   */
  vsockStats(): VsockDeviceStats {
    const rx = this.queueStats(VSOCK_RX_QUEUE);
    const tx = this.queueStats(VSOCK_TX_QUEUE);
    const event = this.queueStats(VSOCK_EVENT_QUEUE);
    return {
      rx,
      tx,
      event,
      rxPackets: rx.chains,
      rxBytes: rx.bytes,
      rxSplitParts: rx.segments,
      txPackets: tx.chains - tx.dropsMalformed,
      txBytes: tx.bytes,
      drops: tx.dropsMalformed + rx.dropsMalformed + rx.dropsTooBig,
      txDropsByReason: { ...tx.vsockDropsByReason },
      errors: rx.errors + tx.errors + event.errors,
      eventsDelivered: event.chains,
      eventPending: this.vsock.pending >= 0,
    };
  }
}

/** Write guest_cid as le64 (the high word is 0: a CID is below 2^32). */
function writeCid(b: Uint8Array, cid: number): void {
  for (let i = 0; i < 4; i++) b[VSOCK_CFG_GUEST_CID + i] = (cid >>> (8 * i)) & 0xff;
  for (let i = 4; i < 8; i++) b[VSOCK_CFG_GUEST_CID + i] = 0;
}
