import { describe, expect, it } from 'vitest';
import { errorCode } from '../helpers.js';
import { compilePathMatcher, expandHome, parsePathPattern } from '../../src/manifest/paths.js';

const code = (raw: string): string => errorCode(() => parsePathPattern(raw));

describe('parsePathPattern', () => {
  it('normalises . segments, resolvable .., a trailing slash, and NFC', () => {
    expect(parsePathPattern('~/Work/./Reports/').text).toBe('~/Work/Reports');
    expect(parsePathPattern('/srv/a/../b').text).toBe('/srv/b');
    expect(parsePathPattern('~').text).toBe('~');
    expect(parsePathPattern('/').text).toBe('/');
    // NFD "é" (e + combining acute) normalises to NFC, so it cannot name a different directory.
    expect(parsePathPattern('/data/cafe\u0301').text).toBe('/data/caf\u00e9');
  });

  it('rejects relative paths, NUL, escaping .., empty segments and other tricks, each with its own code', () => {
    expect(code('Work/Reports')).toBe('PATH_RELATIVE');
    expect(code('./x')).toBe('PATH_RELATIVE');
    expect(code('')).toBe('PATH_EMPTY');
    expect(code('/tmp/a\0b')).toBe('PATH_NUL');
    expect(code('/tmp/a\nb')).toBe('PATH_CONTROL_CHAR');
    expect(code('/tmp/\u202egnp.exe')).toBe('PATH_CONTROL_CHAR');
    expect(code('/..')).toBe('PATH_DOTDOT');
    expect(code('~/../bob')).toBe('PATH_DOTDOT');
    expect(code('/srv/*/../etc')).toBe('PATH_DOTDOT');
    expect(code('/srv//data')).toBe('PATH_EMPTY_SEGMENT');
    expect(code('~bob/x')).toBe('PATH_TILDE_USER');
    expect(code('/srv/a**')).toBe('PATH_GLOB_SYNTAX');
    expect(code('/srv/[ab]')).toBe('PATH_GLOB_SYNTAX');
    expect(code('/srv/{a,b}')).toBe('PATH_GLOB_SYNTAX');
    expect(code('/' + 'a'.repeat(5000))).toBe('PATH_TOO_LONG');
  });

  it('expands ~ per user', () => {
    expect(expandHome(parsePathPattern('~/Work/**'), '/home/alice')).toBe('/home/alice/Work/**');
    expect(expandHome(parsePathPattern('~'), '/home/alice/')).toBe('/home/alice');
    expect(expandHome(parsePathPattern('/srv'), '/home/alice')).toBe('/srv');
  });
});

describe('compilePathMatcher', () => {
  it('a literal path matches itself and everything beneath, never a sibling with the same prefix', () => {
    const m = compilePathMatcher('/home/alice/Work');
    expect(m('/home/alice/Work')).toBe(true);
    expect(m('/home/alice/Work/a/b.txt')).toBe(true);
    expect(m('/home/alice/Workshop')).toBe(false);
    expect(m('/home/alice')).toBe(false);
  });

  it('* and ? stay within one segment; ** spans segments including none', () => {
    const star = compilePathMatcher('/data/*.csv');
    expect(star('/data/a.csv')).toBe(true);
    expect(star('/data/.hidden.csv')).toBe(true);
    expect(star('/data/sub/a.csv')).toBe(false);
    const q = compilePathMatcher('/data/?.txt');
    expect(q('/data/a.txt')).toBe(true);
    expect(q('/data/ab.txt')).toBe(false);
    const deep = compilePathMatcher('/data/**');
    expect(deep('/data')).toBe(true);
    expect(deep('/data/x/y/z')).toBe(true);
    expect(deep('/database')).toBe(false);
    const mid = compilePathMatcher('/r/**/secret');
    expect(mid('/r/secret')).toBe(true);
    expect(mid('/r/a/b/secret')).toBe(true);
    expect(mid('/r/a/b/secrets')).toBe(false);
  });

  it('treats regex metacharacters in names literally', () => {
    const m = compilePathMatcher('/data/a.b+(c)');
    expect(m('/data/a.b+(c)')).toBe(true);
    expect(m('/data/aXb+(c)')).toBe(false);
  });

  it('the root grant matches everything', () => {
    expect(compilePathMatcher('/')('/etc/passwd')).toBe(true);
    expect(compilePathMatcher('/**')('/')).toBe(true);
  });
});
