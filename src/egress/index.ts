/**
 * `cordon/egress`: the governed forward proxy, its ClientHello parser, resolvers and limits.
 */
export {
  EgressProxy,
  parseAuthority,
  type AuditAppender,
  type DestinationStats,
  type EgressProxyOptions,
  type ListenTarget,
  type ProxyStats,
} from './proxy.js';
export {
  parseClientHello,
  CLIENT_HELLO_MAX_BYTES,
  type ClientHello,
  type ClientHelloResult,
} from './client-hello.js';
export {
  decisionHeader,
  denialBody,
  type ProxyDecision,
  type ProxyDecisionCode,
} from './decision.js';
export { parseResolveEntries, staticResolver, systemResolver, type Resolver } from './resolver.js';
export {
  defaultLimits,
  parseProxyConfig,
  readProxyConfig,
  ProxyLimitsSchema,
  DEFAULT_METHODS,
  type ProxyConfig,
  type ProxyLimits,
} from './config.js';
