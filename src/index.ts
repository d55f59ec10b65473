/** Public entry point of node-vls. */
export { loadNative } from './native';
