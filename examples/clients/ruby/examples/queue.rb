# frozen_string_literal: true

# Style 03, via a queue: the node keeps a queue of a pattern for us; we pull from it.
#   ruby -Ilib examples/queue.rb tcp://127.0.0.1:7000 'job:*' [COUNT]
require "berrymq"

$stdout.sync = true
url = ARGV.fetch(0, "tcp://127.0.0.1:7000")
pattern = ARGV.fetch(1, "job:*")
count = ARGV[2]&.to_i

BerryMQ.connect_via_queue(url, pattern)
puts "waiting for #{pattern} at #{url}"
received = 0
until count && received >= count
  begin
    message = BerryMQ.get(timeout: 60) # raises BerryMQ::Empty when nothing came
  rescue BerryMQ::Empty
    next
  end
  puts message # e.g. job:done ["report.txt"] {"pages":3}
  received += 1
end
BerryMQ.close_connection
