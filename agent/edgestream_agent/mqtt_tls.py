# TLS for the MQTT client (mqtt.py), imported only when transport.mqtt.tls
# is set: wraps the connected non-blocking socket with the port's `ssl`
# module. The handshake runs on the first reads and writes (no
# do_handshake_on_connect), so it does not block either. ctx True means a
# context that does not verify the server certificate.


def wrap(sock, ctx, params, host):
    import ssl
    if ctx is True:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_NONE
        try:
            ctx.check_hostname = False
        except AttributeError:
            pass
    kw = {"server_side": False, "do_handshake_on_connect": False}
    if params.get("server_hostname", host):
        kw["server_hostname"] = params.get("server_hostname", host)
    return ctx.wrap_socket(sock, **kw)
