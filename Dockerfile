# restful-auth: a small image with the release binary only.
#   docker build --build-arg RESTFUL_AUTH_COMMIT=$(git rev-parse --short HEAD) -t restful-auth .
#   docker run -p 8000:8000 -v restful-auth-data:/data restful-auth
# The commit is what `restful-auth --version` and /metrics name; the build context holds no
# .git, so without the argument it is `unknown`.
#
# Behind a reverse proxy, trust it (--trusted-proxies, RESTFUL_AUTH_TRUSTED_PROXIES), or every
# client shares the proxy's address, and so its throttle buckets and its session addresses:
#   docker run -p 8000:8000 -v restful-auth-data:/data \
#     -e RESTFUL_AUTH_TRUSTED_PROXIES=<the proxy's address or network> restful-auth
# e.g. 172.17.0.1/32 for a proxy on the Docker host, or the network of the proxy's container.
# compose.yaml runs the scale-out shape: PostgreSQL, two instances and nginx.

# Base images by exact version, so that a rebuild gets the same toolchain and system; bump
# them on purpose (the Rust version is the rust-version of Cargo.toml).
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: built against stand-in sources, it is reused
# until Cargo.toml, Cargo.lock or build.rs change, so a change to the code rebuilds only the
# service itself.
COPY Cargo.toml Cargo.lock build.rs ./
COPY loadtest/Cargo.toml loadtest/
RUN mkdir -p src loadtest/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > loadtest/src/main.rs \
    && cargo build --release --locked --bin restful-auth \
    && rm -rf src loadtest/src

COPY src src
COPY migrations migrations
COPY templates templates
COPY loadtest loadtest
# The same release build as CI's (Cargo.toml's [profile.release]). The sources keep their own
# times, older than the stand-ins' build: touching them makes cargo build them again.
ARG RESTFUL_AUTH_COMMIT=unknown
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin restful-auth \
    && ./target/release/restful-auth --version

FROM debian:bookworm-20260824-slim
RUN groupadd --system --gid 10001 restful-auth \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin \
        restful-auth \
    && mkdir -p /data && chown 10001:10001 /data
COPY --from=build /src/target/release/restful-auth /usr/local/bin/restful-auth
# Numeric, so that a runtime refusing root (Kubernetes' runAsNonRoot) can tell it is not.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# The master key sealing the stored secrets defaults to /data/restful_auth.sqlite3.master-key
# (back it up apart from the database). To keep it out of the volume (and on PostgreSQL, where
# it is required), give it as a docker secret readable by this user only:
#   openssl rand -base64 32 | docker secret create restful-auth-master-key -
#   docker service create --secret source=restful-auth-master-key,uid=10001,mode=0400 \
#     -e RESTFUL_AUTH_MASTER_KEY_FILE=/run/secrets/restful-auth-master-key … restful-auth
# /metrics on a port of its own, apart from the API: reachable only where it is published
# (e.g. `-p 127.0.0.1:9464:9464`, or the monitoring network).
ENV RESTFUL_AUTH_BIND=0.0.0.0:8000 \
    RESTFUL_AUTH_METRICS_BIND=0.0.0.0:9464 \
    DATABASE_URL=sqlite:///data/restful_auth.sqlite3
EXPOSE 8000 9464
# Asks /readyz on the address RESTFUL_AUTH_BIND names (loopback for 0.0.0.0): the image needs
# no curl. Ready means the database answers with the schema this build expects.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["restful-auth", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/restful-auth"]
CMD ["serve"]
