import { InvalidArgumentError } from '../errors.js';
import type { GuestAllocator } from '../memory/allocator.js';
import { isPowerOfTwo } from '../ring/queue-state.js';
import { ETH_MAX_FRAME, NET_MAX_TX_FRAME } from '../spec/net.js';
import type { RxBufferMode } from './mode.js';

/** Frame data starts on this boundary in guest memory (a cache line: copies run aligned). */
export const RX_DATA_ALIGN = 64;
/** Page size of a receive pool unless its spec says otherwise. */
export const RX_DEFAULT_PAGE_SIZE = 4096;
/** Big mode default payload: 65562-byte buffers (5.1.6.3.1) less the 12-byte header. */
export const RX_BIG_PAYLOAD = NET_MAX_TX_FRAME;
/** Smallest page size a pool may use. */
export const RX_MIN_PAGE_SIZE = 128;
/** Largest header the module handles (virtio-net: 12, virtio-vsock: 44). */
export const RX_MAX_HDR_SIZE = 1024;

/**
 * A receive buffer pool in guest memory, as plain data: `pages` pages of
 * `pageSize` bytes from guest address `base`, contiguous and inside one
 * memory region. Allocate it with allocRecvPool() (or GuestAllocator with
 * recvPoolSize()).
 */
export interface RecvPoolSpec {
  /** Guest address of the first page: a multiple of 64 (allocRecvPool aligns to the page size). */
  base: number;
  pages: number;
  /** Bytes per page, a power of two of at least 128; default 4096. */
  pageSize?: number;
}

/** What decides a receive buffer's layout: the mode, the header and the buffer sizes. */
export interface RecvLayoutOptions {
  mode: RxBufferMode;
  /** Bytes of the header in front of each packet (virtio-net 10 or 12, virtio-vsock 44). */
  hdrSize: number;
  /** Small mode: bytes of each buffer, header included; default hdrSize + 1518. */
  smallBufferSize?: number;
  /** Big mode: bytes each chain holds after the header; default 65550 (a 65562-byte buffer with a 12-byte header). */
  bigPayload?: number;
}

/**
 * Where things sit in one pool unit (a small slot, a big chain of pages, a
 * mergeable page). Offsets are from the unit's first byte, which is 64-aligned.
 *
 * - small: unit = slot of `unitBytes` (a multiple of 64); the buffer is
 *   [hdrAt, hdrAt + bufferBytes) with hdrAt = 64 - hdrSize (mod 64), so the
 *   frame starts at dataAt, a multiple of 64. Slots are carved from the pool
 *   back to back and may cross page boundaries.
 * - big: unit = `pagesPerBuffer` contiguous pages, posted as one chain of
 *   `descsPerBuffer` descriptors: [0, hdrSize) for the header (at the start of
 *   the first page, Linux's sg[0]), [dataAt, pageSize) for the rest of the
 *   first page (dataAt = hdrSize rounded up to 64), then one descriptor per
 *   further page.
 * - mergeable: unit = one page; the buffer is [hdrAt, pageSize) with the same
 *   headroom as small, so the data after the header of a packet's first
 *   buffer starts 64-aligned (52 bytes of headroom for a 12-byte header).
 */
export interface RecvLayout {
  readonly mode: RxBufferMode;
  readonly hdrSize: number;
  readonly pageSize: number;
  /** Offset of the header in a unit. */
  readonly hdrAt: number;
  /** Offset of the frame data in a unit (a multiple of 64). */
  readonly dataAt: number;
  /** Bytes between the starts of two units. */
  readonly unitBytes: number;
  /** Device-writable bytes of one posted buffer (big: of the whole chain). */
  readonly bufferBytes: number;
  /** Pages of one unit (small: 0, slots are carved across pages). */
  readonly pagesPerBuffer: number;
  /** Descriptors one posted buffer takes; the indirect tables' maxEntries must be at least this in big mode. */
  readonly descsPerBuffer: number;
  /** Largest frame (after the header) one packet can carry; mergeable: per buffer after the first one's header. */
  readonly maxFrame: number;
}

const roundUp = (n: number, a: number): number => Math.ceil(n / a) * a;

function checkInt(what: string, v: number, min: number, max: number): void {
  if (!(Number.isInteger(v) && v >= min && v <= max)) throw new InvalidArgumentError(`${what} ${v} must be an integer in [${min}, ${max}]`);
}

/** Compute (and validate) the layout of one pool unit for `options` and `pageSize`. */
export function recvLayout(options: RecvLayoutOptions, pageSize = RX_DEFAULT_PAGE_SIZE): RecvLayout {
  const { mode, hdrSize } = options;
  checkInt('header size', hdrSize, 1, RX_MAX_HDR_SIZE);
  checkInt('page size', pageSize, RX_MIN_PAGE_SIZE, 1 << 24);
  if (!isPowerOfTwo(pageSize)) throw new InvalidArgumentError(`page size ${pageSize} must be a power of two`);
  // The header and at least as many data bytes fit in a page (5.1.6.3.1: a mergeable buffer holds at least a header).
  if (pageSize < 2 * roundUp(hdrSize, RX_DATA_ALIGN)) {
    throw new InvalidArgumentError(`page size ${pageSize} is too small for a ${hdrSize}-byte header (need ${2 * roundUp(hdrSize, RX_DATA_ALIGN)})`);
  }
  const headroom = (RX_DATA_ALIGN - (hdrSize % RX_DATA_ALIGN)) % RX_DATA_ALIGN;
  switch (mode) {
    case 'small': {
      const bufferBytes = options.smallBufferSize ?? hdrSize + ETH_MAX_FRAME;
      checkInt('small buffer size', bufferBytes, hdrSize + 1, 0x7fffffff);
      return {
        mode,
        hdrSize,
        pageSize,
        hdrAt: headroom,
        dataAt: headroom + hdrSize,
        unitBytes: roundUp(headroom + bufferBytes, RX_DATA_ALIGN),
        bufferBytes,
        pagesPerBuffer: 0,
        descsPerBuffer: 1,
        maxFrame: bufferBytes - hdrSize,
      };
    }
    case 'big': {
      const payload = options.bigPayload ?? RX_BIG_PAYLOAD;
      checkInt('big payload', payload, 1, 0x7fffffff - 2 * pageSize);
      const dataAt = roundUp(hdrSize, RX_DATA_ALIGN);
      const firstData = pageSize - dataAt;
      const pages = 1 + Math.ceil(Math.max(0, payload - firstData) / pageSize);
      const maxFrame = firstData + (pages - 1) * pageSize;
      return {
        mode,
        hdrSize,
        pageSize,
        hdrAt: 0,
        dataAt,
        unitBytes: pages * pageSize,
        bufferBytes: hdrSize + maxFrame,
        pagesPerBuffer: pages,
        descsPerBuffer: pages + 1,
        maxFrame,
      };
    }
    case 'mergeable':
      return {
        mode,
        hdrSize,
        pageSize,
        hdrAt: headroom,
        dataAt: headroom + hdrSize,
        unitBytes: pageSize,
        bufferBytes: pageSize - headroom,
        pagesPerBuffer: 1,
        descsPerBuffer: 1,
        maxFrame: pageSize - headroom - hdrSize,
      };
    default:
      throw new InvalidArgumentError(`unknown receive buffer mode ${String(mode)}`);
  }
}

/** How many buffers (units) a pool of `pool.pages` pages holds in this layout. */
export function recvPoolBuffers(layout: RecvLayout, pages: number): number {
  if (layout.mode === 'small') return Math.floor((pages * layout.pageSize) / layout.unitBytes);
  return Math.floor(pages / layout.pagesPerBuffer);
}

/** Options of recvPoolSize() / allocRecvPool(). */
export interface RecvPoolOptions extends RecvLayoutOptions {
  /** Default 4096. */
  pageSize?: number;
  /**
   * Big mode: whether chains go through indirect tables (VIRTIO_F_INDIRECT_DESC
   * negotiated and the driver-side queue given tables of at least descsPerBuffer
   * entries). Then every ring slot can hold a chain; otherwise each chain
   * takes descsPerBuffer ring descriptors. Default false.
   */
  indirect?: boolean;
  /**
   * Buffers beyond what fills the ring, for packets the user holds (hold())
   * while the ring stays full. Default 0: held buffers leave the ring short.
   */
  spare?: number;
}

/** The size of a receive pool: feed `bytes` and `pageSize` (as alignment) to GuestAllocator.alloc. */
export interface RecvPoolSize {
  pages: number;
  pageSize: number;
  /** pages * pageSize. */
  bytes: number;
  /** Buffers (small slots, big chains, mergeable pages) the pool holds. */
  buffers: number;
  /** Descriptors per posted buffer (big mode: size the driver-side queue's indirect tables to at least this). */
  descsPerBuffer: number;
}

/**
 * The pool a receive queue of `queueSize` needs to be kept full in a mode:
 * - small: queueSize + spare slots of unitBytes (header + 1518 + headroom,
 *   rounded to 64: 1600 bytes for a 12-byte header), in whole pages;
 * - big: (indirect ? queueSize : floor(queueSize / descsPerBuffer)) + spare
 *   chains of pagesPerBuffer pages (17 pages of 4096 for 65550 bytes after
 *   the header);
 * - mergeable: queueSize + spare pages.
 * @throws InvalidArgumentError when the queue cannot hold one big chain (2.7.5.3.1: no chain longer than the queue).
 */
export function recvPoolSize(queueSize: number, options: RecvPoolOptions): RecvPoolSize {
  // Any ring size: a packed ring's need not be a power of two (2.8.10.1).
  if (!(Number.isInteger(queueSize) && queueSize >= 1 && queueSize <= 32768)) throw new InvalidArgumentError(`queue size ${queueSize} must be an integer in [1, 32768]`);
  const spare = options.spare ?? 0;
  checkInt('spare buffers', spare, 0, 1 << 20);
  const layout = recvLayout(options, options.pageSize ?? RX_DEFAULT_PAGE_SIZE);
  const { pageSize, descsPerBuffer } = layout;
  let buffers: number;
  let pages: number;
  switch (layout.mode) {
    case 'small':
      buffers = queueSize + spare;
      pages = Math.ceil((buffers * layout.unitBytes) / pageSize);
      break;
    case 'big': {
      if (descsPerBuffer > queueSize) {
        throw new InvalidArgumentError(`a big receive chain takes ${descsPerBuffer} descriptors; queue size ${queueSize} is smaller (2.7.5.3.1)`);
      }
      buffers = (options.indirect === true ? queueSize : Math.floor(queueSize / descsPerBuffer)) + spare;
      pages = buffers * layout.pagesPerBuffer;
      break;
    }
    default:
      buffers = queueSize + spare;
      pages = buffers;
  }
  return { pages, pageSize, bytes: pages * pageSize, buffers, descsPerBuffer };
}

/** Size a receive pool with recvPoolSize() and allocate it page-aligned from `alloc`. */
export function allocRecvPool(alloc: GuestAllocator, queueSize: number, options: RecvPoolOptions): RecvPoolSpec {
  const size = recvPoolSize(queueSize, options);
  return { base: alloc.alloc(size.bytes, size.pageSize), pages: size.pages, pageSize: size.pageSize };
}
