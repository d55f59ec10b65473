/** Public entry point of node-vls. */
export { readConfig, type VlsConfig } from './config';
export { errnoException, VlsError, type VlsSystemError } from './errors';
export { Registry, namespaceDir, namespaceRoot, type EndpointEntry } from './namespace';
export { loadNative } from './native';
export {
  attach,
  currentWorker,
  VlsListener,
  VlsSession,
  VlsWorker,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  type ConnectOptions,
  type ListenOptions,
} from './worker';
