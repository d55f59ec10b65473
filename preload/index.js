'use strict';
// node --require node-vls/preload app.js  (or NODE_OPTIONS=--require=node-vls/preload)
require('../dist/src/preload').start();
