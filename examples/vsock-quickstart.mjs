import { mkdtempSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SharedArena, VirtioVsockDevice, VsockDriver, VsockHost, VsockUnixMuxer } from 'virtio-lab';

const arena = new SharedArena(64 << 20);
const device = new VirtioVsockDevice(arena.guestMemory(48 << 20), { guestCid: 3, arena });
const host = new VsockHost(device);                 // CID 2, in process
const guest = await VsockDriver.open(device);       // negotiates, posts rx / event buffers, serves

host.listen(5000).on('connection', (s) => s.on('error', console.error).pipe(s)); // a host echo server
const sock = guest.connect(5000);                   // a stream socket from the guest
sock.on('connect', () => sock.end('hello'));        // end() is a half-close: the echo still comes back
for await (const b of sock) console.log(`guest got: ${b}`); // until the host's end
// guest.connect(port, { type: 'seqpacket' }) keeps message boundaries (when SEQPACKET is negotiated).

// Host programs over Unix sockets, as Firecracker does: connect to v.sock and
// write "CONNECT <port>\n" (answer "OK <port>\n"); guest connections to port P
// go to v.sock_P.
const udsPath = join(mkdtempSync(join(tmpdir(), 'vsock-')), 'v.sock');
const mux = new VsockUnixMuxer(host.stack, { udsPath, guestCid: 3 });
await mux.listen();
guest.listen(1234).on('connection', (s) => s.end('hi from the guest\n'));
const unix = createConnection(udsPath).end('CONNECT 1234\n');
let reply = '';
for await (const b of unix) reply += b;
console.log(`host program got: ${JSON.stringify(reply)}`);

device.transportReset(4);   // 5.10.6.6: every connection reset, the guest re-reads guest_cid
await mux.close(); await guest.close(); await host.close(); await device.close();
