#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus-seeds/<target>/ from real-world requests and responses.

The requests are what curl 8, wget 1.21, Firefox and Chrome send for a GET, plus HEAD,
conditional, range, HTTP/1.0 keep-alive, pipelined, body-carrying and hostile requests.
http_request and response_parser inputs start with a flags byte and cut points (see fuzz/src/http.rs
and fuzz/src/response.rs).
Run from anywhere: python3 fuzz/make-seeds.py
"""
import hashlib, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))

CURL = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
CURL_HEAD = b"HEAD /a.txt HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
WGET = (b"GET /dir/b.txt HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: Wget/1.21.4\r\nAccept: */*\r\n"
        b"Accept-Encoding: identity\r\nConnection: Keep-Alive\r\n\r\n")
FIREFOX = (b"GET /dir/ HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) "
           b"Gecko/20100101 Firefox/128.0\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
           b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nConnection: keep-alive\r\n"
           b"Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n"
           b"Sec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\nPriority: u=0, i\r\n\r\n")
CHROME_COND = (b"GET /style.css HTTP/1.1\r\nHost: localhost:8080\r\nConnection: keep-alive\r\n"
               b"sec-ch-ua-platform: \"Linux\"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
               b"(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\nAccept: text/css,*/*;q=0.1\r\n"
               b"Referer: http://localhost:8080/\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
               b"Accept-Language: en-US,en;q=0.9\r\nIf-None-Match: \"2ebc98a1-1800\"\r\n"
               b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n")
RANGE = (b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-1023,2048-\r\n"
         b"If-Range: \"2ebc98a1-1800\"\r\nUser-Agent: curl/8.5.0\r\n\r\n")
IMS = b"GET /a.txt HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT\r\n\r\n"
INM_LIST = b"GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: W/\"a\", \"b\" , *\r\n\r\n"
HTTP10 = b"GET / HTTP/1.0\r\n\r\n"
HTTP10_KA = b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n"
ABSOLUTE = b"GET http://localhost:8080/dir/b.txt?x=1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"
CLOSE = b"GET /a.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
BODY = b"GET /a.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
LF_ONLY = b"GET /a.txt HTTP/1.1\nHost: h\n\n"
LEADING_CRLF = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"
POST = b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b"
CHUNKED = b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
HTTP2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TRAVERSAL = b"GET /../../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n"
ENCODED = b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n"
SPLITTING = b"GET /a%0d%0aSet-Cookie:%20x HTTP/1.1\r\nHost: h\r\n\r\n"
TWO_HOSTS = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
BAD_CL = b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
OBS_FOLD = b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: a\r\n b\r\n\r\n"
VERSION = b"GET / HTTP/1.2\r\nHost: h\r\n\r\n"
LONG_TARGET = b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: h\r\n\r\n"

def http_inputs():
    out = []
    singles = [CURL, CURL_HEAD, WGET, FIREFOX, CHROME_COND, RANGE, IMS, INM_LIST, HTTP10, HTTP10_KA,
               ABSOLUTE, CLOSE, BODY, LF_ONLY, LEADING_CRLF, POST, CHUNKED, HTTP2, TRAVERSAL, ENCODED,
               SPLITTING, TWO_HOSTS, BAD_CL, OBS_FOLD, VERSION, LONG_TARGET]
    for s in singles:
        out.append((0, [], s))
    # Pipelines: pairs and a browser-like burst, whole and cut inside heads and bodies.
    pipelines = [CURL + CURL_HEAD, WGET + CHROME_COND, BODY + CURL, CURL + CLOSE + CURL,
                 HTTP10_KA + HTTP10_KA + HTTP10, CURL + POST + CURL, RANGE + IMS + INM_LIST + ABSOLUTE,
                 LF_ONLY + LEADING_CRLF]
    for p in pipelines:
        out.append((0, [], p))
        out.append((0, [1, len(p) // 3, len(p) // 2, len(p) - 1], p))
    # Tight limits (flag 8) and draining after the first request (flag 16).
    out.append((8, [], LONG_TARGET))
    out.append((8, [7, 300], FIREFOX))
    out.append((16, [], CURL + CURL + CURL))
    out.append((24, [20], BODY + BODY))
    return out

PATHS = [b"/", b"/index.html", b"/a.txt", b"/dir/", b"/dir", b"/dir/b.txt", b"/sp%20ace.txt",
         b"/link-in", b"/dir/up/a.txt", b"/dir/up/dir/up/", b"/link-out/secret.txt", b"/link-out/",
         b"/link-out", b"/link-secret", b"/abs-secret", b"/etc-passwd", b"/proc-root/etc/passwd",
         b"/dir/upup/outside/secret.txt", b"/dir/upup/root/a.txt", b"/dir/loop", b"/%6cink-out/secret.txt",
         b"/../outside/secret.txt", b"/%2e%2e/outside/secret.txt", b"/.%2e/x", b"/dir/..%2f..%2fx",
         b"/a%5c..%5cb", b"/a\\..\\b", b"/a%00b", b"/a%0d%0ab", b"//a/./b//c/", b"/a?x=../../y",
         b"/a#../x", b"http://localhost:8080/dir/b.txt", b"http://h", b"HTTP://h/../x", b"*",
         b"/%7Euser/%C3%A9", b"/%", b"/%4", b"/%zz", b"/%2F", b"/..a/b..c/.d", b"/dir/./b.txt"]

NGINX = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
         b"Content-Type: text/html\r\nContent-Length: 12\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
         b"Connection: keep-alive\r\nETag: \"2ebc98a1-c\"\r\nAccept-Ranges: bytes\r\n\r\nhello world\n")
IOSCALE_404 = (b"HTTP/1.1 404 Not Found\r\nServer: ioscale\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n404 Not Found\n")
NOT_MOD = b"HTTP/1.1 304 Not Modified\r\nServer: ioscale\r\nETag: \"x\"\r\n\r\n"
CHUNKED_RESP = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
                b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
UNTIL_CLOSE = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until the server closes"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CLOSE_RESP = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
HTTP10_KA = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc"
BAD_CL_RESP = b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"
GARBAGE = b"SSH-2.0-OpenSSH_9.6\r\n"

def response_inputs():
    out = []
    for r in [NGINX, IOSCALE_404, NOT_MOD, CHUNKED_RESP, UNTIL_CLOSE, CONTINUE, CLOSE_RESP, NO_CONTENT,
              HTTP10_KA, BAD_CL_RESP, GARBAGE]:
        out.append((0, [], r))
    for p in [NGINX + IOSCALE_404 + NOT_MOD, CHUNKED_RESP + NGINX, CONTINUE + CLOSE_RESP + NGINX,
              HTTP10_KA + UNTIL_CLOSE]:
        out.append((0, [], p))
        out.append((0, [3, len(p) // 2, len(p) - 2], p))
    out.append((8, [], NGINX[:NGINX.index(b"hello")] + NOT_MOD))  # HEAD: no body
    # Structured recipes: (kind, a, b) triples; 0x80 in kind = Connection: close.
    out.append((16, [], bytes([0, 12, 0, 45, 1, 0, 65, 2, 0, 85, 7, 0, 110, 0, 40])))
    out.append((16, [5, 100, 900], bytes([10, 255, 3, 70, 3, 0, 0, 0, 0, 0x80 | 20, 1, 0])))
    out.append((24, [9], bytes([0, 12, 0, 65, 3, 0, 85, 1, 0, 110, 0, 9])))
    return out

def write(target, name, data):
    d = os.path.join(HERE, "corpus-seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name + "-" + hashlib.sha1(data).hexdigest()[:12]), "wb") as f:
        f.write(data)

def main():
    for i, (flags, cuts, stream) in enumerate(http_inputs()):
        assert len(cuts) <= 7
        data = bytes([(flags & ~7) | len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts) + stream
        write("http_request", "seed%02d" % i, data)
    for i, (flags, cuts, stream) in enumerate(response_inputs()):
        data = bytes([(flags & ~7) | len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts) + stream
        write("response_parser", "seed%02d" % i, data)
    for i, p in enumerate(PATHS):
        write("path_resolver", "seed%02d" % i, p)

main()
