/* Debian 12's CivetWeb 1.15 loads "libssl.so" at run time and looks up
 * SSL_get_peer_certificate, which OpenSSL 3 no longer exports (it is a macro
 * for SSL_get1_peer_certificate there; upstream civetweb issue #1334). The
 * missing pointer crashes the first TLS connection. This library carries the
 * SONAME "libssl.so" and depends on OpenSSL 3's libssl: itkit_server loads it
 * before CivetWeb, whose dlopen("libssl.so") then finds it (every other
 * symbol resolves through its dependency) plus the one function below. */
#include <openssl/ssl.h>

#undef SSL_get_peer_certificate
X509 *SSL_get_peer_certificate(const SSL *s);

/* Like OpenSSL 1.1's function, returns a reference the caller frees. */
X509 *SSL_get_peer_certificate(const SSL *s) { return SSL_get1_peer_certificate(s); }
