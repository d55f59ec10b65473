#!/usr/bin/env node
'use strict';
process.exitCode = require('../dist/src/cli').main(process.argv.slice(2));
