import { describe, expect, it } from 'vitest';
import { errorCode } from '../helpers.js';
import { parseNetworkScope, scopesOverlap } from '../../src/manifest/network.js';

const code = (raw: string): string => errorCode(() => parseNetworkScope(raw));

describe('parseNetworkScope', () => {
  it('normalises case, IDNA, default ports, trailing dots and path prefixes', () => {
    expect(parseNetworkScope('HTTPS://*.Sheets.Example.COM:443').text).toBe(
      'https://*.sheets.example.com',
    );
    expect(parseNetworkScope('https://bücher.example').text).toBe('https://xn--bcher-kva.example');
    expect(parseNetworkScope('https://api.example.com.:8443/v1/').text).toBe(
      'https://api.example.com:8443/v1',
    );
    expect(parseNetworkScope('http://203.0.113.7').port).toBe(80);
    expect(parseNetworkScope('https://[2001:DB8:0:0::1]:8443').text).toBe(
      'https://[2001:db8::1]:8443',
    );
    expect(parseNetworkScope('https://[10.0.0.0/8]').text).toBe('https://[10.0.0.0/8]');
    expect(parseNetworkScope('https://[fd00::/8]').prefixLength).toBe(8);
  });

  it('rejects *, public-suffix wildcards, userinfo and non-canonical IP notations', () => {
    expect(code('https://*')).toBe('NET_WILDCARD_ALL');
    expect(code('https://*.com')).toBe('NET_WILDCARD_PUBLIC_SUFFIX');
    expect(code('https://*.co.uk')).toBe('NET_WILDCARD_PUBLIC_SUFFIX');
    expect(code('https://*.github.io')).toBe('NET_WILDCARD_PUBLIC_SUFFIX');
    expect(code('https://*.internal')).toBe('NET_WILDCARD_PUBLIC_SUFFIX');
    expect(code('https://api.*.example.com')).toBe('NET_WILDCARD_SYNTAX');
    expect(code('https://a*.example.com')).toBe('NET_WILDCARD_SYNTAX');
    expect(code('https://user:pw@api.example.com')).toBe('NET_USERINFO');
    expect(code('https://@api.example.com')).toBe('NET_USERINFO');
    for (const ip of [
      '2130706433',
      '0x7f.1',
      '0177.0.0.1',
      '127.1',
      '0x7f000001',
      '169.254.169.254.',
    ]) {
      expect(code(`http://${ip}`), ip).toBe('NET_IP_NONCANONICAL');
    }
    expect(code('https://*.10.0.0.1')).toBe('NET_WILDCARD_SYNTAX');
    expect(code('https://[10.0.0.1/8]')).toBe('NET_CIDR_INVALID');
    expect(code('https://[10.0.0.0/33]')).toBe('NET_CIDR_INVALID');
    expect(code('https://[fe80::1%eth0]')).toBe('NET_HOST_INVALID');
    expect(code('ftp://files.example.com')).toBe('NET_SCHEME');
    expect(code('api.example.com')).toBe('NET_SCOPE_SYNTAX');
    expect(code('https://api.example.com:0')).toBe('NET_PORT');
    expect(code('https://api.example.com:99999')).toBe('NET_PORT');
    expect(code('https://api.example.com:http')).toBe('NET_PORT');
    expect(code('https://api.example.com/a/../b')).toBe('NET_PATH');
    expect(code('https://api.example.com/a%2Fb')).toBe('NET_PATH');
    expect(code('https://api.example.com/?q=1')).toBe('NET_PATH');
    expect(code('https://exa mple.com')).toBe('NET_SCOPE_SYNTAX');
    expect(code('https://-bad-.example.com')).toBe('NET_HOST_INVALID');
    expect(code('https://')).toBe('NET_HOST_INVALID');
  });
});

// Matching URLs against scopes is the decision point's job: see test/policy/pdp.test.ts.
describe('scopesOverlap', () => {
  it('overlap: wildcard vs exact, wildcard vs wildcard, different ports never', () => {
    const p = parseNetworkScope;
    expect(scopesOverlap(p('https://*.example.com'), p('https://a.example.com'))).toBe(true);
    expect(scopesOverlap(p('https://*.example.com'), p('https://*.a.example.com'))).toBe(true);
    expect(scopesOverlap(p('https://*.example.com'), p('https://example.com'))).toBe(false);
    expect(scopesOverlap(p('https://a.example.com'), p('https://a.example.com:8443'))).toBe(false);
    expect(scopesOverlap(p('https://[10.0.0.0/8]'), p('https://10.1.2.3'))).toBe(true);
  });
});
