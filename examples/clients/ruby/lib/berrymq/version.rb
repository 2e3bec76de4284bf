# frozen_string_literal: true

module BerryMQ
  VERSION = "0.1.0"
end
