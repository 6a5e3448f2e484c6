# TLS for the MQTT client (mqtt.py), imported only when transport.mqtt.tls
# is set: a context made once from the config, then each connected
# non-blocking socket wrapped with it. The handshake runs on the first reads
# and writes (no do_handshake_on_connect), so it does not block either.
#
# Verification is the default: the broker's certificate must chain to the
# CA certificate in ca_file (PEM or DER, on the board's filesystem) and
# name the server (server_hostname, default the host), or the handshake
# fails before a byte of CONNECT (client id, user, password) leaves the
# board. verify=False (tls_verify: false) skips both checks: the link is
# encrypted but anyone on the network path can pose as the broker.
#
# Ports: MicroPython's ssl (mbedTLS: ESP32, RP2040 W, the unix port) and
# CPython's take the CA as `cadata` DER bytes; a PEM file is decoded to DER
# here (its first certificate: one CA).


def context(ca_file=None, verify=True):
    # -> an ssl.SSLContext for a client. Raises OSError when ca_file cannot
    # be read, ValueError when it holds no certificate the port can parse.
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        try:
            ctx.check_hostname = False  # (CPython: before CERT_NONE)
        except AttributeError:
            pass
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    with open(ca_file, "rb") as f:
        ca = f.read()
    i = ca.find(b"-----BEGIN CERTIFICATE-----")
    if i >= 0:
        # PEM -> DER (the first certificate): every port's ssl takes DER
        # bytes, not every mbedTLS build parses PEM
        from binascii import a2b_base64
        j = ca.find(b"-----END", i)
        ca = a2b_base64(ca[i + 27:j].replace(b"\r", b"").replace(b"\n", b""))
    try:
        ctx.load_verify_locations(cadata=ca)
    except Exception as e:  # ssl.SSLError, MicroPython's ValueError/OSError
        raise ValueError("%s holds no CA certificate this port can read (%s)" % (ca_file, e))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def wrap(sock, ctx, params, host):
    # ctx True (umqtt's ssl=True): a context that verifies nothing
    if ctx is True:
        ctx = context(None, False)
    return ctx.wrap_socket(sock, server_side=False, do_handshake_on_connect=False,
                           server_hostname=params.get("server_hostname") or host)
