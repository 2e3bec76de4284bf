# frozen_string_literal: true

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "berrymq"
require "minitest/autorun"

# Every test starts with a fresh bus whose receivers' errors are raised (as the Python
# suite's berrymq_bus fixture does).
module FreshBus
  def setup
    super
    BerryMQ.reset
    BerryMQ.raise_errors = true
  end

  def teardown
    BerryMQ.reset
    super
  end
end
