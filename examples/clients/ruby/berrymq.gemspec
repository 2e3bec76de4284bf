# frozen_string_literal: true

require_relative "lib/berrymq/version"

Gem::Specification.new do |spec|
  spec.name = "berrymq"
  spec.version = BerryMQ::VERSION
  spec.summary = "berryMQ for Ruby: identifiers with wildcards, receivers, queues, and JSON-RPC to berryMQ nodes"
  spec.description = <<~TEXT
    A programmer-friendly message library: send messages named "job:done", receive them
    with patterns such as "*:done" in blocks, BerryMQ::Follower classes or pull queues,
    and exchange them with a berryMQ node (Python) over TCP or HTTP in the three styles
    (interconnect, one way, via a queue), plus request/reply with ask. Standard library only.
  TEXT
  spec.authors = ["berryMQ contributors"]
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.0"
  # (named from the gemspec's directory, wherever it is loaded from: Bundler's path: gems)
  spec.files = Dir.chdir(__dir__) { Dir["lib/**/*.rb"] + Dir["examples/*.rb"] + ["README.md", "LICENSE", "berrymq.gemspec"] }
  spec.require_paths = ["lib"]
  spec.metadata["rubygems_mfa_required"] = "true"
end
