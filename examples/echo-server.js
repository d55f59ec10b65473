// An ordinary net echo server: nothing here knows about node-vls.
//   node --require ./preload examples/echo-server.js [port]
'use strict';
const net = require('node:net');
const port = Number(process.argv[2] || 7000);
const server = net.createServer((socket) => socket.pipe(socket));
server.listen(port, '127.0.0.1', () => console.log(`echo server on 127.0.0.1:${port}`));
