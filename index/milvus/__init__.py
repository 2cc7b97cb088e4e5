"""The index in Milvus (Lite, Standalone or Distributed): shared by any number of replicas."""
