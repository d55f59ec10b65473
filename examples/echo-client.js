// An ordinary net client: sends lines, prints the echo, reports the round trip.
//   node --require ./preload examples/echo-client.js [port] [count]
'use strict';
const net = require('node:net');
const port = Number(process.argv[2] || 7000);
const count = Number(process.argv[3] || 10000);
const socket = net.connect(port, '127.0.0.1', () => {
  let n = 0;
  const t0 = process.hrtime.bigint();
  socket.on('data', () => {
    if (++n === count) {
      const us = Number(process.hrtime.bigint() - t0) / 1e3 / count;
      console.log(`${count} round trips, ${us.toFixed(1)} us each; ` +
        `local ${socket.localAddress}:${socket.localPort} -> remote ${socket.remoteAddress}:${socket.remotePort}`);
      socket.end();
    } else socket.write('ping\n');
  });
  socket.write('ping\n');
});
