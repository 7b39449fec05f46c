"""Deployment: local stack launcher, docker-compose, Kubernetes manifests."""
