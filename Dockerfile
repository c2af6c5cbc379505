# restful-auth: a small image with the release binary only.
#   docker build -t restful-auth .
#   docker run -p 8000:8000 -v restful-auth-data:/data restful-auth
# Behind a reverse proxy, trust it, or every client shares the proxy's address (and its
# throttle buckets):
#   docker run -p 8000:8000 -v restful-auth-data:/data \
#     -e RESTFUL_AUTH_TRUSTED_PROXIES=<the proxy's address or network> restful-auth
# e.g. 172.17.0.1/32 for a proxy on the Docker host, or the proxy container's network.

FROM rust:1-bookworm AS build
# The commit the image is built from, for restful_auth_build_info and --version (the build
# context has no .git): docker build --build-arg RESTFUL_AUTH_COMMIT=$(git rev-parse --short HEAD) .
ARG RESTFUL_AUTH_COMMIT=unknown
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY templates templates
COPY loadtest loadtest
RUN cargo build --release --locked --bin restful-auth

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin restful-auth \
    && mkdir -p /data && chown restful-auth /data
COPY --from=build /src/target/release/restful-auth /usr/local/bin/restful-auth
USER restful-auth
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
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/restful-auth"]
CMD ["serve"]
