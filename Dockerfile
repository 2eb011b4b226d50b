# syntax=docker/dockerfile:1
# A CareAgent Neuron in a container (docs/deploy.md). Two stages: the first installs everything and bundles dist/,
# the second holds only Node, the production node_modules and dist/, and runs as the unprivileged user neuron.
#   docker build -t neuron .
#   docker run -d --name neuron -p 8700:8700 -v neuron-data:/var/lib/neuron neuron
#   docker exec neuron neuron status

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 builds from source when no prebuilt binary fits; corepack's signature check fails here, npm works.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/* \
  && npm install -g pnpm@10.34.9
COPY package.json pnpm-lock.yaml ./
RUN pnpm install --frozen-lockfile
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
RUN pnpm build && pnpm prune --prod

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    NEURON_DATA_DIR=/var/lib/neuron \
    NEURON_HOST=0.0.0.0 \
    NEURON_PORT=8700 \
    NEURON_LOG_FORMAT=logfmt
RUN groupadd --system neuron \
  && useradd --system --gid neuron --home-dir /var/lib/neuron --shell /usr/sbin/nologin neuron \
  && install -d -o neuron -g neuron -m 0750 /var/lib/neuron
WORKDIR /opt/neuron
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN ln -s /opt/neuron/dist/neuron.js /usr/local/bin/neuron
USER neuron
VOLUME ["/var/lib/neuron"]
EXPOSE 8700
# /health answers 200 while the Neuron serves, healthy or degraded (a registry away is not the container's fault).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.NEURON_PORT||8700)+'/health',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "--enable-source-maps", "/opt/neuron/dist/neuron.js"]
CMD ["start"]
