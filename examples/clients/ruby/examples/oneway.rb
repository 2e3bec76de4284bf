# frozen_string_literal: true

# Style 02, one way: send messages to a node; its receivers get them.
#   ruby -Ilib examples/oneway.rb tcp://127.0.0.1:7000
require "berrymq"

url = ARGV.fetch(0, "tcp://127.0.0.1:7000")
BerryMQ.connect_oneway(url)
BerryMQ.send_message("job:done", "report.txt", pages: 3) # returns once the node has it
BerryMQ.send_message("job:log", "finished")
BerryMQ.close_connection
puts "sent job:done and job:log"
