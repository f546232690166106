#!/usr/bin/env bash
# Makes a throwaway certificate authority, a server certificate and a client
# certificate for procshared's TLS and mTLS, with the openssl command-line
# tool. For tests and for trying things out; for production, use your own PKI.
#
#   deploy/make-certs.sh [OUT_DIR] [NAME ...]
#
# OUT_DIR  where to write (default: ./certs); created if missing. Existing
#          files there are overwritten.
# NAME     host names and IP addresses the server is reached by: they go in
#          the server certificate's subjectAltName. Default: localhost,
#          127.0.0.1, ::1 and this machine's host name. A client must use one
#          of them in its https:// URL.
#
# Writes:
#   ca.pem                 the CA certificate: give it to clients (--ca) and,
#                          for mTLS, to the server (--client-ca)
#   ca.key                 the CA's key: keep it, or delete it once done
#   server.pem server.key  for procshared --tls-cert / --tls-key
#   client.pem client.key  for procshare --cert / --key (mTLS)
#
# Environment: DAYS (validity, default 365), CLIENT_NAME (the client
# certificate's common name, default procshare-client).
set -euo pipefail

out=${1:-certs}
[ $# -gt 0 ] && shift
days=${DAYS:-365}
client_name=${CLIENT_NAME:-procshare-client}

if ! command -v openssl >/dev/null 2>&1; then
    echo "make-certs.sh: the openssl command is needed (apt-get install openssl)" >&2
    exit 1
fi
case "$days" in
    '' | *[!0-9]*) echo "make-certs.sh: DAYS must be a whole number, got '$days'" >&2; exit 2 ;;
esac

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    names=(localhost 127.0.0.1 ::1)
    host=$(hostname 2>/dev/null || true)
    if [ -n "$host" ] && [ "$host" != localhost ]; then
        names+=("$host")
    fi
fi

# subjectAltName: IP:… for addresses, DNS:… for names.
san=""
for n in "${names[@]}"; do
    if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then
        entry="IP:$n"
    else
        entry="DNS:$n"
    fi
    san="${san:+$san,}$entry"
done

mkdir -p "$out"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# EC P-256 keys (PKCS#8 PEM): small, fast, and supported by rustls.
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
serial() { echo "0x$(openssl rand -hex 16)"; }

newkey "$out/ca.key"
openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days" \
    -subj "/CN=procshare throwaway CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -set_serial "$(serial)" \
    -out "$out/ca.pem"

# sign NAME CN EXTENSIONS: NAME.key, NAME.pem signed by the CA.
sign() {
    local name=$1 cn=$2 ext=$3
    newkey "$out/$name.key"
    openssl req -new -key "$out/$name.key" -subj "/CN=$cn" -out "$tmp/$name.csr"
    printf '%s\n' "$ext" >"$tmp/$name.ext"
    openssl x509 -req -in "$tmp/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
        -set_serial "$(serial)" -days "$days" -sha256 \
        -extfile "$tmp/$name.ext" -out "$out/$name.pem" 2>/dev/null
}

sign server "${names[0]}" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san"

sign client "$client_name" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

# Certificates are public; keys stay private (umask 077 made them 0600).
chmod 644 "$out/ca.pem" "$out/server.pem" "$out/client.pem"

echo "wrote $out/{ca,server,client}.{pem,key}; the server certificate is for: ${names[*]}"
