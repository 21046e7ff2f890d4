/**
 * Resets, refusals, timeouts, limits and the stack-wide resets
 * (transportReset, close), between two stacks (pair.ts).
 */
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { VSOCK_OP_REQUEST, VSOCK_OP_RST, VSOCK_OP_SHUTDOWN } from '../../../src/spec/vsock.js';
import { VSOCK_DEFAULT_CLOSE_TIMEOUT_MS, VSOCK_DEFAULT_CONNECT_TIMEOUT_MS, VsockStack, type VsockSocket } from '../../../src/vsock/stack/index.js';
import { CapturePort, GUEST_CID, HOST_CID, type Pair, closed, createPair, errorOf, readAll, settle, until } from './pair.js';

let pair: Pair | null = null;
afterEach(async () => {
  await pair?.close();
  pair = null;
});

describe('vsock RST paths', () => {
  it('connect to a port nobody listens on -> ECONNREFUSED, then "close"; the peer counts unknownConnection', async () => {
    const p = (pair = createPair());
    const sock = p.guest.connect(HOST_CID, 4444);
    const err = await errorOf(sock);
    expect(err.code).toBe('ECONNREFUSED');
    await closed(sock);
    expect(p.host.stats.unknownConnection).toBe(1);
    expect(p.host.stats.rstSent).toBe(1);
    expect(p.guest.connectionCount).toBe(0);
  });

  it('destroy() -> RST: the peer gets ECONNRESET and "close"; the destroyer closes without an error', async () => {
    const p = (pair = createPair());
    const server = p.host.listen(10);
    const accepted = once(server, 'connection') as Promise<[VsockSocket]>;
    const sock = p.guest.connect(HOST_CID, 10);
    await once(sock, 'connect');
    const [peer] = await accepted;
    const errs: Error[] = [];
    sock.on('error', (e) => errs.push(e));
    sock.destroy();
    expect((await errorOf(peer)).code).toBe('ECONNRESET');
    await Promise.all([closed(sock), closed(peer)]);
    expect(errs).toEqual([]);
    expect(p.guest.stats.rstSent).toBe(1);
    expect(p.host.stats.rstSent).toBe(0); // never answer RST
    expect(p.host.connectionCount).toBe(0);
  });

  it('connect timeout (the peer drops the REQUEST) -> ETIMEDOUT and an RST to the peer; default 2000 ms as Linux', async () => {
    const p = (pair = createPair());
    p.guestPort.drop = (h) => h.op === VSOCK_OP_REQUEST;
    p.host.listen(11);
    const t0 = Date.now();
    const sock = p.guest.connect(HOST_CID, 11, { timeoutMs: 60 });
    const err = await errorOf(sock);
    expect(err.code).toBe('ETIMEDOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(55);
    await closed(sock);
    expect(p.guest.stats.connectTimeouts).toBe(1);
    expect(p.guest.stats.rstSent).toBe(1);
    await until(() => p.host.stats.rstReceived === 1, 'the RST reached the peer');
    expect(p.host.stats.rstSent).toBe(0);
    const plain = new VsockStack(new CapturePort(), { localCid: 3 });
    expect(plain.connectTimeoutMs).toBe(VSOCK_DEFAULT_CONNECT_TIMEOUT_MS);
    expect(VSOCK_DEFAULT_CONNECT_TIMEOUT_MS).toBe(2000);
    expect(plain.closeTimeoutMs).toBe(VSOCK_DEFAULT_CLOSE_TIMEOUT_MS);
    expect(VSOCK_DEFAULT_CLOSE_TIMEOUT_MS).toBe(8000);
  });

  it('close timeout: a peer that never answers SHUTDOWN(RCV|SEND) with RST gets our RST after closeTimeoutMs; "close" without an error', async () => {
    const p = (pair = createPair({ guest: { closeTimeoutMs: 50 } }));
    // The host's side of the handshake is lost.
    p.hostPort.drop = (h) => h.op === VSOCK_OP_RST || (h.op === VSOCK_OP_SHUTDOWN && h.flags === 3);
    const server = p.host.listen(12);
    const accepted = once(server, 'connection') as Promise<[VsockSocket]>;
    const sock = p.guest.connect(HOST_CID, 12);
    const [peer] = await accepted;
    const peerData = readAll(peer);
    // The host ends first (SHUTDOWN(SEND) gets through); the guest, ending after it read that end, closes with SHUTDOWN(RCV|SEND).
    peer.end();
    await readAll(sock);
    sock.end('bye');
    await peerData;
    const errs: Error[] = [];
    sock.on('error', (e) => errs.push(e));
    const t0 = Date.now();
    await closed(sock);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    expect(errs).toEqual([]);
    expect(p.guest.stats.closeTimeouts).toBe(1);
    expect(p.guest.connectionCount).toBe(0);
    await closed(peer);
  });

  it('RST after a graceful SHUTDOWN of both directions is not an error: queued data stays readable', async () => {
    const p = (pair = createPair());
    const server = p.host.listen(13);
    const accepted = once(server, 'connection') as Promise<[VsockSocket]>;
    const sock = p.guest.connect(HOST_CID, 13);
    const [peer] = await accepted;
    sock.pause();
    peer.end('last words');
    // The peer shuts both directions by hand, then resets: everything was said.
    await until(() => sock.peerShutdown !== 0, 'SHUTDOWN(SEND)');
    p.host.sendControl(peer, VSOCK_OP_SHUTDOWN, 3);
    p.host.sendRst(peer);
    p.host.detach(peer);
    const errs: Error[] = [];
    sock.on('error', (e) => errs.push(e));
    await settle(6);
    expect((await readAll(sock)).toString()).toBe('last words');
    sock.end();
    await closed(sock);
    expect(errs).toEqual([]);
    peer.destroy();
  });
});

describe('vsock listeners and limits', () => {
  it('backlog: REQUESTs beyond the connections waiting for accept() get RST (counted backlogFull); the waiting ones connect once accepted', async () => {
    const p = (pair = createPair());
    const verdicts: Array<(ok: boolean) => void> = [];
    p.host
      .listen(20, { backlog: 2, accept: () => new Promise<boolean>((r) => verdicts.push(r)) })
      .on('connection', (s: VsockSocket) => s.on('error', () => {}));
    const a = p.guest.connect(HOST_CID, 20);
    const b = p.guest.connect(HOST_CID, 20);
    const c = p.guest.connect(HOST_CID, 20);
    const bErr = errorOf(b);
    expect((await errorOf(c)).code).toBe('ECONNREFUSED');
    expect(p.host.stats.backlogFull).toBe(1);
    expect(verdicts).toHaveLength(2);
    expect(a.connecting && b.connecting).toBe(true);
    verdicts[0](true);
    verdicts[1](false);
    await once(a, 'connect');
    expect((await bErr).code).toBe('ECONNREFUSED');
    expect(p.host.stats.acceptRefused).toBe(1);
    a.destroy();
    await until(() => p.host.connectionCount === 0, 'host table empty');
  });

  it('accept() hook: true -> RESPONSE, false / throw / reject -> RST; info carries the peer and the port', async () => {
    const p = (pair = createPair());
    const seen: unknown[] = [];
    let n = 0;
    const server = p.host.listen(21, {
      accept: (info) => {
        seen.push(info);
        const i = n++;
        if (i === 0) return true;
        if (i === 1) return false;
        if (i === 2) throw new Error('no');
        return Promise.reject(new Error('no'));
      },
    });
    server.on('connection', (s: VsockSocket) => s.on('error', () => {}));
    const ok = p.guest.connect(HOST_CID, 21);
    await once(ok, 'connect');
    for (let i = 0; i < 3; i++) expect((await errorOf(p.guest.connect(HOST_CID, 21))).code).toBe('ECONNREFUSED');
    expect(seen[0]).toEqual({ remoteCid: GUEST_CID, remotePort: ok.localPort, localPort: 21 });
    expect(p.host.stats.acceptRefused).toBe(3);
    ok.destroy();
  });

  it('the peer giving up (RST) while accept() decides: the connection is forgotten, nothing is emitted', async () => {
    const p = (pair = createPair());
    let decide: (ok: boolean) => void = () => {};
    const server = p.host.listen(22, { accept: () => new Promise<boolean>((r) => (decide = r)) });
    let connections = 0;
    server.on('connection', () => connections++);
    const sock = p.guest.connect(HOST_CID, 22, { timeoutMs: 30 });
    expect((await errorOf(sock)).code).toBe('ETIMEDOUT');
    await until(() => p.host.connectionCount === 0, 'the RST cancelled the accept');
    decide(true);
    await settle();
    expect(connections).toBe(0);
    expect(p.host.stats.responsesSent).toBe(0);
  });

  it('maxConnections: a REQUEST beyond gets RST (counted), connect() beyond throws EMAXCONN', async () => {
    const p = (pair = createPair({ host: { maxConnections: 2 }, guest: { maxConnections: 3 } }));
    p.host.listen(23).on('connection', (s: VsockSocket) => s.on('error', () => {}));
    const socks = [0, 1, 2].map(() => p.guest.connect(HOST_CID, 23));
    expect(() => p.guest.connect(HOST_CID, 23)).toThrow(expect.objectContaining({ code: 'EMAXCONN' }));
    const refused = errorOf(socks[2]);
    await Promise.all([once(socks[0], 'connect'), once(socks[1], 'connect')]);
    expect((await refused).code).toBe('ECONNREFUSED');
    expect(p.host.stats.maxConnectionsRefused).toBe(1);
    for (const s of socks) s.destroy();
    await until(() => p.host.connectionCount === 0, 'host table empty');
  });

  it('VSOCK_PORT_ANY listens on every port without a listener of its own; server.close() stops listening, its connections live on', async () => {
    const p = (pair = createPair());
    const any = p.host.listen(0xffffffff);
    const own = p.host.listen(30);
    const ports: number[] = [];
    const conns: VsockSocket[] = [];
    any.on('connection', (s: VsockSocket) => {
      ports.push(s.localPort);
      conns.push(s);
    });
    own.on('connection', (s: VsockSocket) => conns.push(s));
    const a = p.guest.connect(HOST_CID, 31);
    const b = p.guest.connect(HOST_CID, 7777);
    const c = p.guest.connect(HOST_CID, 30);
    await Promise.all([once(a, 'connect'), once(b, 'connect'), once(c, 'connect')]);
    expect(ports.sort()).toEqual([31, 7777]);
    expect(() => p.host.listen(30)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    const closedEvt = once(own, 'close');
    own.close();
    await closedEvt;
    expect(own.listening).toBe(false);
    // Port 30 now falls to the ANY listener.
    const d = p.guest.connect(HOST_CID, 30);
    await once(d, 'connect');
    expect(ports).toContain(30);
    // The connection accepted before close() still works.
    const peerC = conns.find((s) => s.localPort === 30 && s.remotePort === c.localPort) as VsockSocket;
    const got = readAll(peerC);
    c.end('still here');
    expect((await got).toString()).toBe('still here');
    for (const s of conns) s.on('error', () => {});
    for (const s of [a, b, c, d]) s.destroy();
  });
});

describe('vsock stack-wide resets', () => {
  it('transportReset(): every socket errors ECONNRESET and closes, no packet is sent; listeners still accept afterwards', async () => {
    const p = (pair = createPair());
    const hostConns: VsockSocket[] = [];
    p.host.listen(40).on('connection', (s: VsockSocket) => {
      hostConns.push(s);
      s.on('error', () => {});
      s.resume();
    });
    const guestConns: VsockSocket[] = [];
    p.guest.listen(41).on('connection', (s: VsockSocket) => guestConns.push(s));
    const out = [0, 1, 2].map(() => p.guest.connect(HOST_CID, 40));
    const inbound = p.host.connect(GUEST_CID, 41);
    inbound.on('error', () => {});
    await Promise.all([...out.map((s) => once(s, 'connect')), once(inbound, 'connect')]);
    p.guestPort.drop = (h) => h.op === VSOCK_OP_REQUEST; // a connect in flight too
    const pendingConnect = p.guest.connect(HOST_CID, 40);
    const all = [...out, ...guestConns, pendingConnect];
    const errs = all.map((s) => errorOf(s));
    const sendsBefore = p.guestPort.sends;
    p.guest.transportReset();
    expect(p.guestPort.sends).toBe(sendsBefore);
    expect((await Promise.all(errs)).map((e) => e.code)).toEqual(all.map(() => 'ECONNRESET'));
    await Promise.all(all.map((s) => closed(s)));
    expect(p.guest.connectionCount).toBe(0);
    p.guestPort.drop = null;
    // The host side learns when it next speaks: RST from the guest.
    for (const s of hostConns) s.write('anyone?');
    await until(() => hostConns.every((s) => s.destroyed), 'host sockets reset');
    // Listeners stay, and new connections work both ways.
    const again = p.host.connect(GUEST_CID, 41);
    await once(again, 'connect');
    const fresh = p.guest.connect(HOST_CID, 40);
    await once(fresh, 'connect');
    again.on('error', () => {});
    again.destroy();
    fresh.destroy();
  });

  it('close(): every connection is reset (RST sent), listeners emit "close", connect()/listen() throw ENETDOWN', async () => {
    const p = (pair = createPair());
    const server = p.host.listen(50);
    const peers: VsockSocket[] = [];
    server.on('connection', (s: VsockSocket) => {
      peers.push(s);
      s.on('error', () => {});
    });
    const socks = [0, 1].map(() => p.guest.connect(HOST_CID, 50));
    await Promise.all(socks.map((s) => once(s, 'connect')));
    const serverClosed = once(server, 'close');
    p.host.close();
    await serverClosed;
    const errs = socks.map((s) => errorOf(s));
    expect((await Promise.all(errs)).map((e) => e.code)).toEqual(['ECONNRESET', 'ECONNRESET']);
    await Promise.all(peers.map((s) => closed(s)));
    expect(p.host.stats.rstSent).toBe(2);
    expect(() => p.host.connect(GUEST_CID, 1)).toThrow(expect.objectContaining({ code: 'ENETDOWN' }));
    expect(() => p.host.listen(51)).toThrow(expect.objectContaining({ code: 'ENETDOWN' }));
  });
});
