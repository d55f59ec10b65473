// An ordinary net sink: reads and counts every byte, closes its side when the client ends.
// The server of `vls ab --workload bulk`.
//   node --require ./preload examples/sink-server.js [port]
'use strict';
const net = require('node:net');
const port = Number(process.argv[2] || 7001);
let total = 0;
const server = net.createServer((socket) => {
  socket.on('data', (d) => (total += d.length));
  socket.on('end', () => socket.end());
  socket.on('error', () => {}); // a client that resets is its own business
});
server.listen(port, '127.0.0.1', () => console.log(`sink server on 127.0.0.1:${port}`));
process.on('SIGTERM', () => {
  console.log(`received ${total} bytes`);
  process.exit(0);
});
